#include "quant/recon_error.h"

#include <algorithm>
#include <cmath>

#include "engine/forward.h"
#include "io/error.h"
#include "kernels/gemm.h"

namespace ikv::quant {

std::vector<float> effective_weight(const kernels::Linear& l, const LinearFold* fold) {
  std::vector<float> w = kernels::linear_dense_weight(l);
  if (!fold) return w;
  const auto& in = fold->in_scale;
  const auto& row = fold->row_scale;
  if ((!in.empty() && static_cast<int64_t>(in.size()) != l.in) || (!row.empty() && static_cast<int64_t>(row.size()) != l.out))
    fail("effective weight: fold scales of sizes ", in.size(), "/", row.size(), " do not fit a [", l.out, ", ", l.in,
         "] weight");
  for (int64_t r = 0; r < l.out; ++r)
    for (int64_t j = 0; j < l.in; ++j) {
      float& v = w[r * l.in + j];
      if (!row.empty()) v *= row[r];
      if (!in.empty()) v /= in[j];
    }
  return w;
}

namespace {

// ‖X Wᵀ‖²_F in double, from an fp32 GEMM (callers pass W = A − B for the error, so the difference is
// taken on the weights and the outputs never cancel).
double output_norm2(const float* X, int64_t n, int64_t in, const float* W, int64_t out) {
  std::vector<float> y(n * out);
  kernels::gemm_f32(X, n, in, W, out, y.data());
  double s = 0;
  for (float v : y) s += static_cast<double>(v) * v;
  return s;
}

double error_norm2(const float* X, int64_t n, int64_t in, const float* A, const float* B, int64_t out) {
  std::vector<float> d(out * in);
  for (int64_t i = 0; i < out * in; ++i) d[i] = A[i] - B[i];
  return output_norm2(X, n, in, d.data(), out);
}

}  // namespace

double relative_output_error(const float* X, int64_t n, int64_t in, const float* A, const float* B, int64_t out) {
  const double ref = output_norm2(X, n, in, A, out);
  if (!(ref > 0)) fail("relative output error: the reference output is zero");
  return std::sqrt(error_norm2(X, n, in, A, B, out) / ref);
}

std::vector<std::vector<double>> reconstruction_errors(const model::Weights& fp,
                                                       const std::vector<std::vector<int32_t>>& heldout,
                                                       const std::vector<std::vector<std::vector<float>>>& weights) {
  const model::Config& c = fp.config;
  const int64_t D = c.dim;
  const size_t n_linears = static_cast<size_t>(c.n_layers) * 7;  // model::named_linears' order
  for (const auto& m : weights)
    if (m.size() != n_linears) fail("reconstruction errors: ", m.size(), " weights for ", n_linears, " linears");
  if (heldout.empty()) fail("reconstruction errors: no held-out tokens");
  std::vector<std::vector<float>> hidden;
  for (const auto& seq : heldout) {
    if (seq.empty() || static_cast<int64_t>(seq.size()) > c.max_pos)
      fail("reconstruction errors: a held-out sequence has ", seq.size(), " tokens (1..", c.max_pos, ")");
    std::vector<float> x(seq.size() * D);
    for (size_t t = 0; t < seq.size(); ++t) {
      if (seq[t] < 0 || seq[t] >= c.vocab) fail("reconstruction errors: token id ", seq[t], " is outside the vocabulary");
      fp.embed.row(seq[t], &x[t * D]);
    }
    hidden.push_back(std::move(x));
  }
  std::vector<std::vector<double>> err(weights.size(), std::vector<double>(n_linears));
  const engine::Engine e(fp);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    engine::LinearInputs all;
    for (auto& x : hidden) {
      engine::LinearInputs in;
      e.layer_forward(l, x.data(), static_cast<int64_t>(x.size()) / D, &in);
      all.attn_in.insert(all.attn_in.end(), in.attn_in.begin(), in.attn_in.end());
      all.o_in.insert(all.o_in.end(), in.o_in.begin(), in.o_in.end());
      all.ffn_in.insert(all.ffn_in.end(), in.ffn_in.begin(), in.ffn_in.end());
      all.down_in.insert(all.down_in.end(), in.down_in.begin(), in.down_in.end());
    }
    const model::LayerWeights& Lw = fp.layers[l];
    const kernels::Linear* lin[7] = {&Lw.q, &Lw.k, &Lw.v, &Lw.o, &Lw.gate, &Lw.up, &Lw.down};
    const std::vector<float>* x[7] = {&all.attn_in, &all.attn_in, &all.attn_in, &all.o_in,
                                      &all.ffn_in,  &all.ffn_in,  &all.down_in};
    for (int j = 0; j < 7; ++j) {
      const size_t i = l * 7 + j;
      const kernels::Linear& L = *lin[j];
      const std::vector<float> a = kernels::linear_dense_weight(L);
      const int64_t n = static_cast<int64_t>(x[j]->size()) / L.in;
      const double ref = output_norm2(x[j]->data(), n, L.in, a.data(), L.out);
      if (!(ref > 0)) fail("reconstruction errors: linear ", j, " of layer ", l, " has a zero output");
      for (size_t m = 0; m < weights.size(); ++m) {
        if (weights[m][i].size() != a.size()) fail("reconstruction errors: weight ", i, " of method ", m, " has the wrong size");
        err[m][i] = std::sqrt(error_norm2(x[j]->data(), n, L.in, a.data(), weights[m][i].data(), L.out) / ref);
      }
    }
  }
  return err;
}

}  // namespace ikv::quant
