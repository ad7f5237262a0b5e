// AWQ over a whole model, one decoder layer at a time (llm-awq run_awq): collect the layer's linear
// inputs, search and fold the scales, search the clipping, pack with RTN, then run the packed layer
// to make the next layer's inputs.
#include "quant/awq.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "engine/forward.h"
#include "io/error.h"
#include "quant/awq_search.h"
#include "quant/rtn.h"

namespace ikv::quant {

namespace {

void append(std::vector<float>& dst, const std::vector<float>& src, int64_t row_begin, int64_t rows, int64_t width) {
  dst.insert(dst.end(), src.begin() + row_begin * width, src.begin() + (row_begin + rows) * width);
}

void add_abs(std::vector<double>& sum, const std::vector<float>& x, int64_t width) {
  const int64_t n = static_cast<int64_t>(x.size()) / width;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < width; ++j) sum[j] += std::fabs(x[t * width + j]);
}

std::vector<float> mean_of(const std::vector<double>& sum, int64_t n) {
  std::vector<float> m(sum.size());
  for (size_t j = 0; j < m.size(); ++j) m[j] = static_cast<float>(sum[j] / static_cast<double>(n));
  return m;
}

// x[t, j] /= s[j] for the rows of x (the clipping inputs after a fold; llm-awq apply_scale does the
// same to its input features).
void divide_columns(std::vector<float>& x, const std::vector<float>& s) {
  if (s.empty()) return;
  const int64_t w = static_cast<int64_t>(s.size()), n = static_cast<int64_t>(x.size()) / w;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < w; ++j) x[t * w + j] /= s[j];
}

}  // namespace

AwqLayerInputs collect_awq_inputs(const engine::Engine& e, int64_t layer,
                                  const std::vector<std::vector<float>>& hidden, const AwqOptions& opt) {
  const model::Config& c = e.config();
  const int64_t D = c.dim, Q = c.q_dim(), F = c.hidden;
  int64_t total = 0;
  for (const auto& h : hidden) total += static_cast<int64_t>(h.size()) / D;
  if (total == 0) fail("awq: no calibration tokens");
  // llm-awq samples its clipping tokens as input_feat[0::n_tokens // n_sample_token].
  const int64_t stride = std::max<int64_t>(1, total / std::max<int64_t>(1, opt.clip_tokens));
  std::vector<double> sum_attn(D, 0.0), sum_o(Q, 0.0), sum_ffn(D, 0.0), sum_down(F, 0.0);
  AwqLayerInputs r;
  int64_t t0 = 0, searched = 0;
  for (size_t i = 0; i < hidden.size(); ++i) {
    const int64_t n = static_cast<int64_t>(hidden[i].size()) / D;
    std::vector<float> x = hidden[i];
    engine::LinearInputs in;
    e.layer_forward(layer, x.data(), n, &in);
    add_abs(sum_attn, in.attn_in, D);
    add_abs(sum_o, in.o_in, Q);
    add_abs(sum_ffn, in.ffn_in, D);
    add_abs(sum_down, in.down_in, F);
    // A sequence's first m tokens are a sequence of their own (causal attention), so the search
    // can run them alone.
    const int64_t m = std::min(n, opt.search_len);
    if (i == 0 || searched + m <= opt.search_tokens) {
      append(r.search.attn_in, in.attn_in, 0, m, D);
      append(r.search.o_in, in.o_in, 0, m, Q);
      append(r.search.ffn_in, in.ffn_in, 0, m, D);
      append(r.search.down_in, in.down_in, 0, m, F);
      r.search_lens.push_back(m);
      searched += m;
    } else {
      searched = opt.search_tokens + 1;  // the search set comes from the first sequences only
    }
    for (int64_t t = (stride - t0 % stride) % stride; t < n; t += stride) {
      append(r.clip.attn_in, in.attn_in, t, 1, D);
      append(r.clip.o_in, in.o_in, t, 1, Q);
      append(r.clip.ffn_in, in.ffn_in, t, 1, D);
      append(r.clip.down_in, in.down_in, t, 1, F);
      ++r.clip_n;
    }
    t0 += n;
  }
  r.mean_abs.attn_in = mean_of(sum_attn, total);
  r.mean_abs.o_in = mean_of(sum_o, total);
  r.mean_abs.ffn_in = mean_of(sum_ffn, total);
  r.mean_abs.down_in = mean_of(sum_down, total);
  return r;
}

void quantize_model_awq(model::Weights& w, const CalibrationTokens& calib, const AwqOptions& opt,
                        const LayerProgress& progress, AwqFold* fold) {
  const model::Config& c = w.config;
  const int64_t D = c.dim;
  auto linears = model::named_linears(w);
  for (auto& nl : linears) kernels::validate_spec(opt.spec, nl.linear->in, nl.name);
  if (calib.empty()) fail("awq: no calibration sequences");
  // A QuaRot model applies an online Hadamard between up_proj and down_proj: the up → down fold
  // (and the engine's LinearInputs) would no longer describe one another.
  if (w.rotation) fail("awq: the model is rotated (QuaRot); AWQ quantizes unrotated models only");
  if (opt.scale_grid < 1 || opt.search_tokens < 1 || opt.search_len < 1 || opt.clip_tokens < 1)
    fail("awq: scale grid, search tokens/length and clip tokens must be positive");
  if (opt.clip && (opt.clip_grid < 1 || opt.max_shrink <= 0 || opt.max_shrink >= 1 ||
                   static_cast<int>(opt.max_shrink * opt.clip_grid) < 1))
    fail("awq: clip grid ", opt.clip_grid, " with max shrink ", opt.max_shrink, " has no step");
  std::vector<std::vector<float>> hidden;
  for (size_t i = 0; i < calib.size(); ++i) {
    const auto& seq = calib[i];
    if (seq.empty() || static_cast<int64_t>(seq.size()) > c.max_pos)
      fail("awq: calibration sequence ", i, " has ", seq.size(), " tokens (1..", c.max_pos, ")");
    std::vector<float> x(seq.size() * D);
    for (size_t t = 0; t < seq.size(); ++t) {
      if (seq[t] < 0 || seq[t] >= c.vocab) fail("awq: calibration token id ", seq[t], " is outside the vocabulary");
      w.embed.row(seq[t], &x[t * D]);
    }
    hidden.push_back(std::move(x));
  }
  for (auto& nl : linears)
    if (std::holds_alternative<kernels::Packed>(nl.linear->weight)) fail("awq: ", nl.name, " is already quantized");
  if (fold) fold->clear();
  const kernels::RopeTable rope = kernels::make_rope_table(c.head_dim, c.max_pos, c.rope_theta, c.rope_scaling);
  const engine::Engine e(w);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const auto start = std::chrono::steady_clock::now();
    model::LayerWeights& L = w.layers[l];
    // The search folds into and clips dense fp32 weights: this layer's 16-bit (or bf16-compute)
    // weights are expanded now, and packed at the end of the layer, so one layer at a time is fp32.
    for (kernels::Linear* li : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      if (!std::holds_alternative<kernels::DenseF32>(li->weight)) kernels::set_dense(*li, kernels::linear_dense_weight(*li));
    AwqLayerInputs in = collect_awq_inputs(e, l, hidden, opt);
    const AwqLayerScales s = search_awq_scales(L, c, rope, in, opt);
    fold_awq_scales(L, c, s);
    const std::vector<float> s_o = s.o.empty() ? std::vector<float>{} : repeat_kv_scale(s.o, c);
    kernels::Linear* lin[7] = {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down};
    if (fold) {
      const std::vector<float>* in_scale[7] = {&s.qkv, &s.qkv, &s.qkv, &s_o, &s.gate_up, &s.gate_up, &s.down};
      const std::vector<float>* row_scale[7] = {nullptr, nullptr, &s.o, nullptr, nullptr, &s.down, nullptr};
      for (int j = 0; j < 7; ++j)
        (*fold)[linears[l * 7 + j].name] = {*in_scale[j], row_scale[j] ? *row_scale[j] : std::vector<float>{}};
    }
    if (opt.clip) {
      // q/k are not clipped (llm-awq: "due to qk bmm, it is hard to clip precisely").
      divide_columns(in.clip.attn_in, s.qkv);
      divide_columns(in.clip.o_in, s_o);
      divide_columns(in.clip.ffn_in, s.gate_up);
      divide_columns(in.clip.down_in, s.down);
      const std::vector<float>* x[7] = {nullptr, nullptr, &in.clip.attn_in, &in.clip.o_in,
                                        &in.clip.ffn_in, &in.clip.ffn_in, &in.clip.down_in};
      for (int j = 2; j < 7; ++j) {
        kernels::Linear& li = *lin[j];
        std::vector<float>& wj = kernels::dense_f32_weight(li);
        const auto max_val = search_clip(wj.data(), li.out, li.in, x[j]->data(), in.clip_n, opt.spec,
                                         opt.clip_grid, opt.max_shrink);
        apply_clip(wj.data(), li.out, li.in, opt.spec, max_val);
      }
    }
    for (int j = 0; j < 7; ++j) {
      kernels::Linear& li = *lin[j];
      const std::vector<float>& wj = kernels::dense_f32_weight(li);
      kernels::set_packed(li, std::make_shared<kernels::PackedMatrix>(
                                  quantize_rtn(wj.data(), li.out, li.in, opt.spec, linears[l * 7 + j].name)));
    }
    for (auto& x : hidden) e.layer_forward(l, x.data(), static_cast<int64_t>(x.size()) / D);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (progress) progress(l, c.n_layers, sec);
  }
}

}  // namespace ikv::quant
