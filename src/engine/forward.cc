#include "engine/forward.h"

#include <omp.h>

#include <cstring>

#include "io/error.h"
#include "kernels/linear.h"
#include "kernels/kv_quant.h"

namespace ikv::engine {

KVCache make_kv_cache(const model::Config& c, int64_t capacity, int kv_bits) {
  if (kv_bits != 16 && (kv_bits < 2 || kv_bits > 8)) fail("kv_bits ", kv_bits, " is not supported (2..8 or 16)");
  KVCache kv;
  kv.n_layers = c.n_layers;
  kv.n_kv_heads = c.n_kv_heads;
  kv.head_dim = c.head_dim;
  kv.capacity = capacity;
  kv.kv_bits = kv_bits;
  kv.k.assign(c.n_layers, std::vector<float>(c.n_kv_heads * capacity * c.head_dim));
  kv.v.assign(c.n_layers, std::vector<float>(c.n_kv_heads * capacity * c.head_dim));
  return kv;
}

Engine::Engine(const model::Weights& w)
    : w_(w),
      rope_(kernels::make_rope_table(w.config.head_dim, w.config.max_pos, w.config.rope_theta, w.config.rope_scaling)) {}

namespace {

// The inference backend of decoder_layer: the fp32 kernels on the model's linears as stored
// (dense, bf16 or packed; activation quantization inside linear_forward).
// y = x·Wᵀ for n rows; with row_block > 0 in blocks of exactly row_block rows, the last one padded
// with copies of its last row (so every call has the same shape, whatever n). With at least one
// block per thread, the threads take whole blocks (the kernels run single-threaded inside the
// parallel region: one fork per linear, not one per block); else each block uses every thread.
// A block's rows get the same bits either way: the kernels split no row's sums across threads
// (tests/cli/tasks.sh compares 1 and 2 threads).
void linear_rows(const kernels::Linear& lin, const float* x, int64_t n, float* y, int64_t row_block) {
  if (row_block <= 0) return kernels::linear_forward(lin, x, n, y);
  const int64_t K = lin.in, N = lin.out, blocks = (n + row_block - 1) / row_block;
  auto run_block = [&](int64_t b, std::vector<float>& xp, std::vector<float>& yp) {
    const int64_t r = b * row_block, m = std::min(row_block, n - r);
    if (m == row_block) return kernels::linear_forward(lin, x + r * K, m, y + r * N);
    xp.resize(row_block * K);
    std::copy_n(x + r * K, m * K, xp.data());
    for (int64_t i = m; i < row_block; ++i) std::copy_n(x + (r + m - 1) * K, K, &xp[i * K]);
    yp.resize(row_block * N);
    kernels::linear_forward(lin, xp.data(), row_block, yp.data());
    std::copy_n(yp.data(), m * N, y + r * N);
  };
  if (blocks > 1 && blocks >= omp_get_max_threads()) {
#pragma omp parallel
    {
      std::vector<float> xp, yp;
#pragma omp for schedule(dynamic)
      for (int64_t b = 0; b < blocks; ++b) run_block(b, xp, yp);
    }
  } else {
    std::vector<float> xp, yp;
    for (int64_t b = 0; b < blocks; ++b) run_block(b, xp, yp);
  }
}

struct KernelOps {
  using Scalar = float;
  const model::Weights& w;
  int kv_bits;
  int64_t row_block = 0;  // > 0: linears in blocks of this many rows (packed forwards)

  void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t width, float* out) const {
    kernels::rmsnorm(x, weight, rows, width, w.config.norm_eps, out);
  }
  void linear(int64_t l, Proj p, const float* x, int64_t n, float* y) const {
    using LW = model::LayerWeights;
    static constexpr kernels::Linear LW::*kProj[] = {&LW::q, &LW::k, &LW::v, &LW::o, &LW::gate, &LW::up, &LW::down};
    linear_rows(w.layers[l].*kProj[static_cast<int>(p)], x, n, y, row_block);
  }
  // The reference's dynamic per-token, per-head quantizer.
  void quantize_kv(int64_t, int64_t, int64_t, float* k, float* v) const {
    if (kv_bits >= 16) return;
    kernels::fake_quantize_kv(k, w.config.head_dim, kv_bits);
    kernels::fake_quantize_kv(v, w.config.head_dim, kv_bits);
  }
  void attention(const kernels::AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                 float* probs) const {
    kernels::attention(s, q, k, v, out, probs);
  }
  void swiglu(float* g, const float* u, int64_t count) const { kernels::swiglu(g, u, count); }
};

}  // namespace

void Engine::run_layer(int64_t l, KVCache& cache, int64_t cl, float* x, int64_t n, LayerScratch<float>& s,
                       float* probs, LinearInputs* inputs, const kernels::PackedRows* packed) const {
  const LayerKV<float> kv{cache.k[cl].data(), cache.v[cl].data(), cache.capacity, packed};
  decoder_layer(KernelOps{w_, cache.kv_bits, packed ? kPackedRowBlock : 0}, w_, rope_, l, x, n, cache.len, kv, s,
                probs, inputs);
}

void Engine::embed(const int32_t* tokens, int64_t n, float* x) const {
  const model::Config& c = w_.config;
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.vocab) fail("forward: token id ", tokens[t], " is outside the vocabulary");
    w_.embed.row(tokens[t], &x[t * c.dim]);
  }
}

void Engine::forward(KVCache& cache, const int32_t* tokens, int64_t n, std::vector<float>* logits,
                     int64_t logits_from, const ForwardTaps& taps) const {
  const model::Config& c = w_.config;
  const int64_t D = c.dim;
  const int64_t p0 = cache.len;
  if (n <= 0) return;
  if (p0 + n > cache.capacity) fail("forward: ", p0 + n, " positions exceed the KV cache capacity ", cache.capacity);
  if (p0 + n > c.max_pos) fail("forward: position ", p0 + n - 1, " is beyond max_position_embeddings ", c.max_pos);

  std::vector<float> x(n * D);
  embed(tokens, n, x.data());
  if (taps.layer_outputs) taps.layer_outputs->assign(c.n_layers, {});
  if (taps.attention_probs) taps.attention_probs->assign(c.n_layers, {});

  LayerScratch<float> s(c, n);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    float* probs = nullptr;
    if (taps.attention_probs) {
      (*taps.attention_probs)[l].resize(c.n_heads * n * (p0 + n));
      probs = (*taps.attention_probs)[l].data();
    }
    run_layer(l, cache, l, x.data(), n, s, probs, nullptr);
    if (taps.layer_outputs) (*taps.layer_outputs)[l] = x;
  }
  cache.len = p0 + n;

  if (!logits || logits_from >= n) return;
  const int64_t m = n - logits_from;
  kernels::rmsnorm(&x[logits_from * D], w_.final_norm.data(), m, D, c.norm_eps, s.xn.data());
  logits->resize(m * c.vocab);
  kernels::linear_forward(w_.lm_head, s.xn.data(), m, logits->data());
}

void Engine::forward_packed(KVCache& cache, const int32_t* tokens, const kernels::PackedRows& rows,
                            const std::vector<int64_t>& logit_rows, std::vector<float>* logits) const {
  const model::Config& c = w_.config;
  const int64_t D = c.dim, n = rows.rows();
  if (n <= 0) return;
  for (int64_t r = 0; r < n; ++r) {
    if (rows.row_slot[r] < 0 || rows.row_slot[r] >= cache.capacity)
      fail("forward: slot ", rows.row_slot[r], " is outside the KV cache capacity ", cache.capacity);
    if (rows.row_pos[r] < 0 || rows.row_pos[r] >= c.max_pos)
      fail("forward: position ", rows.row_pos[r], " is beyond max_position_embeddings ", c.max_pos);
  }
  std::vector<float> x(n * D);
  embed(tokens, n, x.data());
  LayerScratch<float> s(c, n);
  for (int64_t l = 0; l < c.n_layers; ++l) run_layer(l, cache, l, x.data(), n, s, nullptr, nullptr, &rows);
  if (!logits || logit_rows.empty()) return;
  const int64_t m = static_cast<int64_t>(logit_rows.size());
  std::vector<float> h(m * D), hn(m * D);
  for (int64_t i = 0; i < m; ++i) {
    if (logit_rows[i] < 0 || logit_rows[i] >= n) fail("forward: logits row ", logit_rows[i], " is outside 0..", n - 1);
    std::copy_n(&x[logit_rows[i] * D], D, &h[i * D]);
  }
  kernels::rmsnorm(h.data(), w_.final_norm.data(), m, D, c.norm_eps, hn.data());
  logits->resize(m * c.vocab);
  linear_rows(w_.lm_head, hn.data(), m, logits->data(), kPackedRowBlock);
}

void Engine::layer_forward(int64_t layer, float* x, int64_t n, LinearInputs* inputs) const {
  const model::Config& c = w_.config;
  if (layer < 0 || layer >= c.n_layers) fail("layer_forward: layer ", layer, " is outside 0..", c.n_layers - 1);
  if (n > c.max_pos) fail("layer_forward: ", n, " tokens exceed max_position_embeddings ", c.max_pos);
  if (n <= 0) return;
  KVCache one;  // a cache of this one layer
  one.n_layers = 1, one.n_kv_heads = c.n_kv_heads, one.head_dim = c.head_dim, one.capacity = n;
  one.k.assign(1, std::vector<float>(c.n_kv_heads * n * c.head_dim));
  one.v.assign(1, std::vector<float>(c.n_kv_heads * n * c.head_dim));
  LayerScratch<float> s(c, n);
  run_layer(layer, one, 0, x, n, s, nullptr, inputs);
}

}  // namespace ikv::engine
