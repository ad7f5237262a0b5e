// GPTQ over a whole model: the calibration activations streamed layer by layer (Hessian
// accumulation), and the driver that quantizes each decoder layer's seven linears.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>

#include "engine/forward.h"
#include "io/error.h"
#include "kernels/gemm.h"
#include "quant/gptq.h"

namespace ikv::quant {
namespace {

// Square tiles of H computed by one GEMM each: only the lower-triangle tiles are computed (Xᵀ X is
// symmetric), which nearly halves the work at LLaMA widths.
constexpr int64_t kTile = 512;

}  // namespace

HessianAccumulator::HessianAccumulator(int64_t cols, int64_t batch_tokens)
    : cols_(cols), cap_(batch_tokens), sum_(static_cast<size_t>(cols * cols), 0.0) {
  if (cols <= 0 || batch_tokens <= 0) fail("HessianAccumulator: bad shape ", cols, " x ", batch_tokens);
  xt_.resize(static_cast<size_t>(cols * cap_));
}

void HessianAccumulator::add(const float* X, int64_t n) {
  for (int64_t t0 = 0; t0 < n;) {
    const int64_t take = std::min(n - t0, cap_ - pending_);
#pragma omp parallel for schedule(static) if (take * cols_ > (1 << 16))
    for (int64_t c = 0; c < cols_; ++c)
      for (int64_t t = 0; t < take; ++t) xt_[c * cap_ + pending_ + t] = X[(t0 + t) * cols_ + c];
    pending_ += take, tokens_ += take, t0 += take;
    if (pending_ == cap_) flush();
  }
}

void HessianAccumulator::flush() {
  const int64_t K = pending_;
  if (K == 0) return;
  if (K < cap_)  // compact the rows to stride K (moving forward in place is safe: c·K <= c·cap)
    for (int64_t c = 1; c < cols_; ++c) std::memmove(&xt_[c * K], &xt_[c * cap_], K * sizeof(float));
  std::vector<float> tile(static_cast<size_t>(kTile * kTile));
  for (int64_t i0 = 0; i0 < cols_; i0 += kTile) {
    const int64_t mi = std::min(kTile, cols_ - i0);
    for (int64_t j0 = 0; j0 <= i0; j0 += kTile) {
      const int64_t nj = std::min(kTile, cols_ - j0);
      kernels::gemm_f32(&xt_[i0 * K], mi, K, &xt_[j0 * K], nj, tile.data());  // Xᵀ[i] · Xᵀ[j]ᵀ
#pragma omp parallel for schedule(static)
      for (int64_t a = 0; a < mi; ++a)
        for (int64_t b = 0; b < nj; ++b) sum_[(i0 + a) * cols_ + j0 + b] += tile[a * nj + b];
    }
  }
  pending_ = 0;
}

std::vector<double> HessianAccumulator::hessian() {
  if (sum_.empty()) fail("HessianAccumulator: the Hessian was already taken");
  flush();
  if (tokens_ == 0) fail("HessianAccumulator: no calibration tokens were added");
  // 2/T Σ x xᵀ: the reference's running average (its scale does not change GPTQ's result). Built
  // in place (mirroring the lower triangle) and handed over, so H never exists twice.
  const double s = 2.0 / static_cast<double>(tokens_);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < cols_; ++i)
    for (int64_t j = 0; j <= i; ++j) sum_[i * cols_ + j] *= s;
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < cols_; ++i)
    for (int64_t j = i + 1; j < cols_; ++j) sum_[i * cols_ + j] = sum_[j * cols_ + i];
  xt_ = {};
  return std::move(sum_);
}

namespace {

// The linears reading one input, quantized with one Hessian factor.
void quantize_linears(HessianAccumulator& acc, const std::vector<kernels::Linear*>& linears,
                      const std::map<const kernels::Linear*, std::string>& names, const GptqOptions& opt) {
  const std::string& first = names.at(linears[0]);
  const GptqHessian h = gptq_prepare(acc.hessian(), linears[0]->in, opt, first + " (input Hessian)");
  for (kernels::Linear* l : linears) {
    const std::vector<float> dense = kernels::linear_dense_weight(*l);
    GptqMatrix m = gptq_quantize(dense.data(), l->out, l->in, h, opt, names.at(l));
    kernels::set_packed(*l, std::make_shared<kernels::PackedMatrix>(std::move(m.packed)), std::move(m.perm));
  }
}

}  // namespace

void quantize_model_gptq(model::Weights& w, const CalibrationTokens& calib, const GptqOptions& opt,
                         const LayerProgress& progress) {
  const model::Config& c = w.config;
  std::map<const kernels::Linear*, std::string> names;
  for (auto& nl : model::named_linears(w)) {
    kernels::validate_spec(opt.spec, nl.linear->in, nl.name);  // fail before any work
    names[nl.linear] = nl.name;
  }
  if (calib.empty()) fail("gptq: no calibration samples");
  if (opt.block <= 0) fail("gptq: block size ", opt.block, " must be positive");
  // The residual stream of every calibration sequence, advanced one (quantized) layer at a time.
  std::vector<std::vector<float>> xs(calib.size());
  for (size_t s = 0; s < calib.size(); ++s) {
    const auto& toks = calib[s];
    if (toks.empty() || static_cast<int64_t>(toks.size()) > c.max_pos)
      fail("gptq: calibration sample ", s, " has ", toks.size(), " tokens (1..", c.max_pos, " allowed)");
    xs[s].resize(toks.size() * c.dim);
    for (size_t t = 0; t < toks.size(); ++t) {
      if (toks[t] < 0 || toks[t] >= c.vocab) fail("gptq: calibration sample ", s, " has token id ", toks[t], " outside the vocabulary");
      w.embed.row(toks[t], &xs[s][t * c.dim]);
    }
  }
  const engine::Engine eng(w);
  engine::LinearInputs in;
  std::vector<float> y;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const auto t0 = std::chrono::steady_clock::now();
    if (opt.before_layer) opt.before_layer(l);
    HessianAccumulator attn(c.dim), o(c.q_dim()), ffn(c.dim), down(c.hidden);
    for (const auto& x : xs) {
      const int64_t n = static_cast<int64_t>(x.size()) / c.dim;
      y = x;
      eng.layer_forward(l, y.data(), n, &in);
      attn.add(in.attn_in.data(), n);
      o.add(in.o_in.data(), n);
      ffn.add(in.ffn_in.data(), n);
      down.add(in.down_in.data(), n);
    }
    model::LayerWeights& L = w.layers[l];
    quantize_linears(attn, {&L.q, &L.k, &L.v}, names, opt);
    quantize_linears(o, {&L.o}, names, opt);
    quantize_linears(ffn, {&L.gate, &L.up}, names, opt);
    quantize_linears(down, {&L.down}, names, opt);
    // The next layer sees this layer's quantized output (not needed after the last layer).
    if (l + 1 < c.n_layers)
      for (auto& x : xs) eng.layer_forward(l, x.data(), static_cast<int64_t>(x.size()) / c.dim);
    if (progress)
      progress(l, c.n_layers, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
}

}  // namespace ikv::quant
