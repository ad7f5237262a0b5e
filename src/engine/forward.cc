#include "engine/forward.h"

#include <omp.h>

#include <algorithm>
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

Engine::Engine(const model::Weights& w, EngineOptions opt)
    : w_(w),
      opt_(std::move(opt)),
      rope_(kernels::make_rope_table(w.config.head_dim, w.config.max_pos, w.config.rope_theta, w.config.rope_scaling)) {}

namespace {

// The inference backend of decoder_layer: the fp32 kernels on the model's linears as stored
// (dense, bf16 or packed; activation quantization inside linear_forward), and the KV quantizer of
// the engine's options (engine/kv_scheme.h).
// y = x·Wᵀ for n rows; with row_block > 0 in blocks of exactly row_block rows, the last one padded
// with copies of its last row (so every call has the same shape, whatever n). With at least one
// block per thread, the threads take whole blocks (the kernels run single-threaded inside the
// parallel region: one fork per linear, not one per block); else each block uses every thread.
// A block's rows get the same bits either way: the kernels split no row's sums across threads
// (tests/cli/tasks.sh compares 1 and 2 threads).
void linear_rows(const kernels::Linear& lin, const float* x, int64_t n, float* y, int64_t row_block,
                 const kernels::ActQuant& act) {
  if (row_block <= 0) return kernels::linear_forward(lin, x, n, y, act);
  const int64_t K = lin.in, N = lin.out, blocks = (n + row_block - 1) / row_block;
  auto run_block = [&](int64_t b, std::vector<float>& xp, std::vector<float>& yp) {
    const int64_t r = b * row_block, m = std::min(row_block, n - r);
    if (m == row_block) return kernels::linear_forward(lin, x + r * K, m, y + r * N, act);
    xp.resize(row_block * K);
    std::copy_n(x + r * K, m * K, xp.data());
    for (int64_t i = m; i < row_block; ++i) std::copy_n(x + (r + m - 1) * K, K, &xp[i * K]);
    yp.resize(row_block * N);
    kernels::linear_forward(lin, xp.data(), row_block, yp.data(), act);
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
  const EngineOptions& opt;
  KVCache& cache;
  int64_t cache_layer;
  const uint8_t* sinks = nullptr;  // the new tokens whose K/V stay unquantized (kv_protect: sinks)
  int64_t row_block = 0;  // > 0: linears in blocks of this many rows (packed forwards)

  void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t width, float* out) const {
    kernels::rmsnorm(x, weight, rows, width, w.config.norm_eps, out);
  }
  void linear(int64_t l, Proj p, const float* x, int64_t n, float* y) const {
    using LW = model::LayerWeights;
    static constexpr kernels::Linear LW::*kProj[] = {&LW::q, &LW::k, &LW::v, &LW::o, &LW::gate, &LW::up, &LW::down};
    const kernels::Linear& lin = w.layers[l].*kProj[static_cast<int>(p)];
    if (opt.scales.empty() || lin.act_quant.bits >= 16) return linear_rows(lin, x, n, y, row_block, lin.act_quant);
    const StaticScales::Layer& s = opt.scales.layers[l];
    const float max_abs = p <= Proj::v ? s.attn_in : p == Proj::o ? s.o_in : p == Proj::down ? s.down_in : s.ffn_in;
    kernels::ActQuant a = lin.act_quant;
    a.static_scale = std::max(a.clip * max_abs / static_cast<float>((1 << (a.bits - 1)) - 1), 1e-8f);
    linear_rows(lin, x, n, y, row_block, a);
  }
  // The reference's dynamic per-token, per-head quantizer, or the layer's static ranges.
  void quantize_kv(int64_t l, int64_t t, int64_t, float* k, float* v) const {
    if (cache.kv_bits >= 16 || opt.kv.kivi() || (sinks && sinks[t])) return;
    const int64_t hd = w.config.head_dim;
    if (!opt.scales.empty()) {
      const StaticScales::Layer& s = opt.scales.layers[l];
      kernels::fake_quantize_kv_range(k, hd, cache.kv_bits, s.k_lo, s.k_hi);
      kernels::fake_quantize_kv_range(v, hd, cache.kv_bits, s.v_lo, s.v_hi);
      return;
    }
    kernels::fake_quantize_kv(k, hd, cache.kv_bits);
    kernels::fake_quantize_kv(v, hd, cache.kv_bits);
  }
  bool quantizes_keys_before_rope() const { return cache.kv_bits < 16 && opt.kv.kivi(); }
  void requantize_kv(int64_t, int64_t p0, int64_t n, const float* k_before_rope, const float* v, LayerKV<float>,
                     const std::function<void(float*, int64_t)>& key_to_cache_form) const {
    kivi_update(cache, cache_layer, opt.kv, p0, n, k_before_rope, v, key_to_cache_form);
  }
  void attention(const kernels::AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                 float* probs) const {
    kernels::attention(s, q, k, v, out, probs);
  }
  void swiglu(float* g, const float* u, int64_t count) const { kernels::swiglu(g, u, count); }
};

}  // namespace

void Engine::run_layer(int64_t l, KVCache& cache, int64_t cl, float* x, int64_t n, LayerScratch<float>& s,
                       float* probs, LinearInputs* inputs, uint8_t* sinks_kept,
                       const kernels::PackedRows* packed) const {
  const LayerKV<float> kv{cache.k[cl].data(), cache.v[cl].data(), cache.capacity, packed};
  std::vector<uint8_t> sinks;
  if (cache.kv_bits < 16 && opt_.kv.protect_sinks) {
    sinks = massive_tokens(x, n, w_.config.dim, opt_.kv.sink_ratio);
    for (int64_t t = 0; t < n && sinks_kept; ++t) sinks_kept[t] |= sinks[t];
  }
  const KernelOps ops{w_, opt_, cache, cl, sinks.empty() ? nullptr : sinks.data(), packed ? kPackedRowBlock : 0};
  decoder_layer(ops, w_, rope_, l, x, n, cache.len, kv, s, probs, inputs);
}

namespace {

void check_positions(const model::Config& c, const KVCache& cache, int64_t n) {
  if (cache.len + n > cache.capacity)
    fail("forward: ", cache.len + n, " positions exceed the KV cache capacity ", cache.capacity);
  if (cache.len + n > c.max_pos)
    fail("forward: position ", cache.len + n - 1, " is beyond max_position_embeddings ", c.max_pos);
}

}  // namespace

void Engine::embed(const int32_t* tokens, int64_t n, float* x) const {
  const model::Config& c = w_.config;
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.vocab) fail("forward: token id ", tokens[t], " is outside the vocabulary");
    w_.embed.row(tokens[t], &x[t * c.dim]);
  }
}

void Engine::forward_layer(int64_t layer, KVCache& cache, float* x, int64_t n, uint8_t* sinks_kept) const {
  if (n <= 0) return;
  check_positions(w_.config, cache, n);
  LayerScratch<float> s(w_.config, n);
  run_layer(layer, cache, layer, x, n, s, nullptr, nullptr, sinks_kept);
}

void Engine::finish_sequence(const KVCache& cache, const uint8_t* sinks_kept, int64_t n) const {
  if (cache.kv_bits < 16 && opt_.kv.protect_sinks) sinks_kept_.push_back(std::count(sinks_kept, sinks_kept + n, uint8_t{1}));
}

void Engine::head(const float* x, int64_t m, std::vector<float>* logits) const {
  const model::Config& c = w_.config;
  std::vector<float> xn(m * c.dim);
  kernels::rmsnorm(x, w_.final_norm.data(), m, c.dim, c.norm_eps, xn.data());
  logits->resize(m * c.vocab);
  kernels::linear_forward(w_.lm_head, xn.data(), m, logits->data());
}

void Engine::forward(KVCache& cache, const int32_t* tokens, int64_t n, std::vector<float>* logits,
                     int64_t logits_from, const ForwardTaps& taps) const {
  const model::Config& c = w_.config;
  const int64_t D = c.dim;
  const int64_t p0 = cache.len;
  if (n <= 0) return;
  check_positions(c, cache, n);

  std::vector<float> x(n * D);
  embed(tokens, n, x.data());
  if (taps.layer_outputs) taps.layer_outputs->assign(c.n_layers, {});
  if (taps.attention_probs) taps.attention_probs->assign(c.n_layers, {});

  if (taps.linear_inputs) taps.linear_inputs->assign(c.n_layers, {});
  std::vector<uint8_t> sinks_kept(n, 0);  // tokens whose K/V some layer kept unquantized

  LayerScratch<float> s(c, n);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    float* probs = nullptr;
    if (taps.attention_probs) {
      (*taps.attention_probs)[l].resize(c.n_heads * n * (p0 + n));
      probs = (*taps.attention_probs)[l].data();
    }
    run_layer(l, cache, l, x.data(), n, s, probs, taps.linear_inputs ? &(*taps.linear_inputs)[l] : nullptr,
              sinks_kept.data());
    if (taps.layer_outputs) (*taps.layer_outputs)[l] = x;
  }
  cache.len = p0 + n;
  finish_sequence(cache, sinks_kept.data(), n);

  if (!logits || logits_from >= n) return;
  head(&x[logits_from * D], n - logits_from, logits);
}

void Engine::forward_packed(KVCache& cache, const int32_t* tokens, const kernels::PackedRows& rows,
                            const std::vector<int64_t>& logit_rows, std::vector<float>* logits) const {
  const model::Config& c = w_.config;
  const int64_t D = c.dim, n = rows.rows();
  if (n <= 0) return;
  if (!packs_rows(cache.kv_bits))
    fail("forward: the KV quantizer (KIVI keys or protected sinks) depends on the whole sequence; a packed batch cannot run it");
  for (int64_t r = 0; r < n; ++r) {
    if (rows.row_slot[r] < 0 || rows.row_slot[r] >= cache.capacity)
      fail("forward: slot ", rows.row_slot[r], " is outside the KV cache capacity ", cache.capacity);
    if (rows.row_pos[r] < 0 || rows.row_pos[r] >= c.max_pos)
      fail("forward: position ", rows.row_pos[r], " is beyond max_position_embeddings ", c.max_pos);
  }
  std::vector<float> x(n * D);
  embed(tokens, n, x.data());
  LayerScratch<float> s(c, n);
  for (int64_t l = 0; l < c.n_layers; ++l) run_layer(l, cache, l, x.data(), n, s, nullptr, nullptr, nullptr, &rows);
  if (!logits || logit_rows.empty()) return;
  const int64_t m = static_cast<int64_t>(logit_rows.size());
  std::vector<float> h(m * D), hn(m * D);
  for (int64_t i = 0; i < m; ++i) {
    if (logit_rows[i] < 0 || logit_rows[i] >= n) fail("forward: logits row ", logit_rows[i], " is outside 0..", n - 1);
    std::copy_n(&x[logit_rows[i] * D], D, &h[i * D]);
  }
  kernels::rmsnorm(h.data(), w_.final_norm.data(), m, D, c.norm_eps, hn.data());
  logits->resize(m * c.vocab);
  linear_rows(w_.lm_head, hn.data(), m, logits->data(), kPackedRowBlock, w_.lm_head.act_quant);
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
  run_layer(layer, one, 0, x, n, s, nullptr, inputs, nullptr);
}

}  // namespace ikv::engine
