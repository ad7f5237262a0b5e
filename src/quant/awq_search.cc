// AWQ's scale search (llm-awq auto_scale.py) and the fold of the scales into the FP layer.
#include "quant/awq_search.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "io/error.h"
#include "kernels/gemm.h"
#include "quant/rtn.h"

namespace ikv::quant {

std::vector<float> awq_scales(const std::vector<float>& x_mean_abs, double alpha) {
  std::vector<float> s(x_mean_abs.size());
  if (s.empty()) return s;
  const float a = static_cast<float>(alpha);
  for (size_t j = 0; j < s.size(); ++j) s[j] = std::max(std::pow(x_mean_abs[j], a), 1e-4f);
  const auto [lo, hi] = std::minmax_element(s.begin(), s.end());
  const float norm = std::sqrt(*hi * *lo);
  for (float& v : s) v /= norm;
  return s;
}

std::vector<float> scaled_fake_quant(const float* W, int64_t rows, int64_t cols, const std::vector<float>& s,
                                     const kernels::QuantSpec& spec) {
  std::vector<float> ws(static_cast<size_t>(rows * cols));
#pragma omp parallel for if (rows * cols > (1 << 16))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) ws[r * cols + j] = W[r * cols + j] * s[j];
  std::vector<float> q(ws.size());
  fake_quantize_rtn(ws.data(), rows, cols, spec, q.data());
#pragma omp parallel for if (rows * cols > (1 << 16))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) q[r * cols + j] /= s[j];
  return q;
}

ScaleSearch search_scale_grid(const std::vector<float>& x_mean_abs, int grid, const ScaleLoss& loss) {
  if (grid < 1) fail("awq: scale grid ", grid, " must be >= 1");
  ScaleSearch r;
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < grid; ++i) {
    const double alpha = static_cast<double>(i) / grid;
    std::vector<float> s = awq_scales(x_mean_abs, alpha);
    const double l = loss(s);
    r.losses.push_back(l);
    if (l < best) {
      best = l;
      r.best = i;
      r.alpha = alpha;
      r.scales = std::move(s);
    }
  }
  if (!std::isfinite(best)) fail("awq: the scale search found no finite loss (non-finite activations or weights)");
  return r;
}

double mean_squared_error(const float* a, const float* b, int64_t n) {
  // Fixed chunks summed in order: the same loss on every run and thread count, so a saved model
  // and a rerun pick the same α.
  constexpr int64_t kChunks = 64;
  double part[kChunks] = {};
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t c = 0; c < kChunks; ++c)
    for (int64_t i = c * n / kChunks; i < (c + 1) * n / kChunks; ++i) {
      const double d = static_cast<double>(a[i]) - b[i];
      part[c] += d * d;
    }
  double s = 0;
  for (double p : part) s += p;
  return n > 0 ? s / static_cast<double>(n) : 0.0;
}

ScaleSearch search_linear_scale(const float* X, int64_t n, const float* W, int64_t out, int64_t in,
                                const std::vector<float>& x_mean_abs, const kernels::QuantSpec& spec, int grid) {
  std::vector<float> org(static_cast<size_t>(n * out)), y(org.size());
  kernels::gemm_f32(X, n, in, W, out, org.data());
  return search_scale_grid(x_mean_abs, grid, [&](const std::vector<float>& s) {
    const std::vector<float> wq = scaled_fake_quant(W, out, in, s, spec);
    kernels::gemm_f32(X, n, in, wq.data(), out, y.data());
    return mean_squared_error(org.data(), y.data(), n * out);
  });
}

void attention_block(const model::Config& c, const kernels::RopeTable& rope, const float* x,
                     const std::vector<int64_t>& lens, const float* wq, const float* wk, const float* wv,
                     const float* wo, float* out) {
  const int64_t D = c.dim, Q = c.q_dim(), KV = c.kv_dim(), Hd = c.head_dim;
  int64_t n = 0;
  for (int64_t len : lens) n += len;
  std::vector<float> q(n * Q), k(n * KV), v(n * KV), att(n * Q);
  kernels::gemm_f32(x, n, D, wq, Q, q.data());
  kernels::gemm_f32(x, n, D, wk, KV, k.data());
  kernels::gemm_f32(x, n, D, wv, KV, v.data());
  int64_t t0 = 0;
  for (int64_t len : lens) {
    // The kernel's cache layout, [kv_heads, len, head_dim], for this sequence alone.
    std::vector<float> kc(KV * len), vc(KV * len);
#pragma omp parallel for if (len > 8)
    for (int64_t t = 0; t < len; ++t) {
      kernels::rope_rotate(&q[(t0 + t) * Q], c.n_heads, Hd, t, rope);
      kernels::rope_rotate(&k[(t0 + t) * KV], c.n_kv_heads, Hd, t, rope);
      for (int64_t h = 0; h < c.n_kv_heads; ++h)
        for (int64_t d = 0; d < Hd; ++d) {
          kc[(h * len + t) * Hd + d] = k[(t0 + t) * KV + h * Hd + d];
          vc[(h * len + t) * Hd + d] = v[(t0 + t) * KV + h * Hd + d];
        }
    }
    kernels::AttentionShape shape{len, 0, c.n_heads, c.n_kv_heads, Hd, len};
    kernels::attention(shape, &q[t0 * Q], kc.data(), vc.data(), &att[t0 * Q]);
    t0 += len;
  }
  kernels::gemm_f32(att.data(), n, Q, wo, D, out);
}

void mlp_block(const float* x, int64_t n, int64_t dim, int64_t hidden, const float* wg, const float* wu,
               const float* wd, float* out) {
  std::vector<float> g(n * hidden), u(n * hidden);
  kernels::gemm_f32(x, n, dim, wg, hidden, g.data());
  kernels::gemm_f32(x, n, dim, wu, hidden, u.data());
  kernels::swiglu(g.data(), u.data(), n * hidden);
  kernels::gemm_f32(g.data(), n, hidden, wd, dim, out);
}

std::vector<float> repeat_kv_scale(const std::vector<float>& s_kv, const model::Config& c) {
  const int64_t Hd = c.head_dim, per_kv = c.n_heads / c.n_kv_heads;
  std::vector<float> s(c.q_dim());
  for (int64_t h = 0; h < c.n_heads; ++h)
    for (int64_t d = 0; d < Hd; ++d) s[h * Hd + d] = s_kv[(h / per_kv) * Hd + d];
  return s;
}

namespace {

bool is_dense_f32(const kernels::Linear& l) {
  const auto* d = std::get_if<kernels::DenseF32>(&l.weight);
  return d && !d->w.empty();
}

const std::vector<float>& dense(const kernels::Linear& l, const char* name) {
  if (!is_dense_f32(l)) fail("awq: ", name, " must be a dense fp32 weight before the search");
  return kernels::dense_f32_weight(l);
}

// Records the search's RTN (α = 0) and chosen losses; returns the chosen scales.
std::vector<float> keep(ScaleSearch r, const char* group, AwqLayerScales& s) {
  s.losses.push_back({group, r.losses[0], r.losses[r.best], r.alpha});
  return std::move(r.scales);
}

void scale_columns(std::vector<float>& w, int64_t rows, int64_t cols, const std::vector<float>& s) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) w[r * cols + j] *= s[j];
}

void divide_rows(std::vector<float>& w, int64_t rows, int64_t cols, const std::vector<float>& s) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) w[r * cols + j] /= s[r];
}

}  // namespace

AwqLayerScales search_awq_scales(const model::LayerWeights& L, const model::Config& c,
                                 const kernels::RopeTable& rope, const AwqLayerInputs& in, const AwqOptions& opt) {
  const int64_t D = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.hidden, Hd = c.head_dim;
  int64_t n = 0;
  for (int64_t len : in.search_lens) n += len;
  if (n <= 0) fail("awq: no search tokens");
  const std::vector<float>&wq = dense(L.q, "q_proj"), &wk = dense(L.k, "k_proj"), &wv = dense(L.v, "v_proj"),
        &wo = dense(L.o, "o_proj"), &wg = dense(L.gate, "gate_proj"), &wu = dense(L.up, "up_proj"),
        &wd = dense(L.down, "down_proj");
  const kernels::QuantSpec& spec = opt.spec;
  AwqLayerScales s;
  std::vector<float> org(n * D), y(n * D);

  attention_block(c, rope, in.search.attn_in.data(), in.search_lens, wq.data(), wk.data(), wv.data(), wo.data(),
                  org.data());
  s.qkv = keep(search_scale_grid(in.mean_abs.attn_in, opt.scale_grid, [&](const std::vector<float>& sc) {
            const auto q = scaled_fake_quant(wq.data(), Q, D, sc, spec);
            const auto k = scaled_fake_quant(wk.data(), KV, D, sc, spec);
            const auto v = scaled_fake_quant(wv.data(), KV, D, sc, spec);
            attention_block(c, rope, in.search.attn_in.data(), in.search_lens, q.data(), k.data(), v.data(),
                            wo.data(), y.data());
            return mean_squared_error(org.data(), y.data(), n * D);
          }), "qkv", s);

  if (opt.fold_v_o) {
    // One scale per kv channel, shared by the query heads reading it: its statistic is the mean |x|
    // over those heads' o_proj input channels (the mean over all the values the scale divides).
    const int64_t per_kv = c.n_heads / c.n_kv_heads;
    std::vector<float> stat(KV, 0.0f);
    for (int64_t h = 0; h < c.n_heads; ++h)
      for (int64_t d = 0; d < Hd; ++d) stat[(h / per_kv) * Hd + d] += in.mean_abs.o_in[h * Hd + d] / per_kv;
    std::vector<float> org_o(n * D);
    kernels::gemm_f32(in.search.o_in.data(), n, Q, wo.data(), D, org_o.data());
    s.o = keep(search_scale_grid(stat, opt.scale_grid, [&](const std::vector<float>& sc) {
            const auto o = scaled_fake_quant(wo.data(), D, Q, repeat_kv_scale(sc, c), spec);
            kernels::gemm_f32(in.search.o_in.data(), n, Q, o.data(), D, y.data());
            return mean_squared_error(org_o.data(), y.data(), n * D);
          }), "o", s);
  }

  mlp_block(in.search.ffn_in.data(), n, D, F, wg.data(), wu.data(), wd.data(), org.data());
  s.gate_up = keep(search_scale_grid(in.mean_abs.ffn_in, opt.scale_grid, [&](const std::vector<float>& sc) {
                const auto g = scaled_fake_quant(wg.data(), F, D, sc, spec);
                const auto u = scaled_fake_quant(wu.data(), F, D, sc, spec);
                mlp_block(in.search.ffn_in.data(), n, D, F, g.data(), u.data(), wd.data(), y.data());
                return mean_squared_error(org.data(), y.data(), n * D);
              }), "gate_up", s);

  s.down = keep(search_linear_scale(in.search.down_in.data(), n, wd.data(), D, F, in.mean_abs.down_in, spec,
                                    opt.scale_grid), "down", s);
  return s;
}

void fold_awq_scales(model::LayerWeights& L, const model::Config& c, const AwqLayerScales& s) {
  const int64_t D = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.hidden;
  for (const kernels::Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
    if (!is_dense_f32(*l)) fail("awq: the scales fold into dense fp32 weights only");
  if (!s.qkv.empty()) {
    for (int64_t j = 0; j < D; ++j) L.attn_norm[j] /= s.qkv[j];
    scale_columns(kernels::dense_f32_weight(L.q), Q, D, s.qkv);
    scale_columns(kernels::dense_f32_weight(L.k), KV, D, s.qkv);
    scale_columns(kernels::dense_f32_weight(L.v), KV, D, s.qkv);
  }
  if (!s.o.empty()) {
    divide_rows(kernels::dense_f32_weight(L.v), KV, D, s.o);
    if (!L.v.bias.empty()) divide_rows(L.v.bias, KV, 1, s.o);
    scale_columns(kernels::dense_f32_weight(L.o), D, Q, repeat_kv_scale(s.o, c));
  }
  if (!s.gate_up.empty()) {
    for (int64_t j = 0; j < D; ++j) L.ffn_norm[j] /= s.gate_up[j];
    scale_columns(kernels::dense_f32_weight(L.gate), F, D, s.gate_up);
    scale_columns(kernels::dense_f32_weight(L.up), F, D, s.gate_up);
  }
  if (!s.down.empty()) {
    divide_rows(kernels::dense_f32_weight(L.up), F, D, s.down);
    if (!L.up.bias.empty()) divide_rows(L.up.bias, F, 1, s.down);
    scale_columns(kernels::dense_f32_weight(L.down), D, F, s.down);
  }
}

}  // namespace ikv::quant
