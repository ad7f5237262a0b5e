#include "engine/forward.h"

#include <cstring>

#include "io/error.h"
#include "kernels/linear.h"
#include "kernels/kv_quant.h"
#include "model/rotation.h"

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
    : w_(w), rope_(kernels::make_rope_table(w.config.head_dim, w.config.max_pos, w.config.rope_theta)) {}

struct Engine::Scratch {
  std::vector<float> xn, q, k, v, att, g, u;
  Scratch(const model::Config& c, int64_t n)
      : xn(n * c.dim), q(n * c.q_dim()), k(n * c.kv_dim()), v(n * c.kv_dim()), att(n * c.q_dim()),
        g(n * c.hidden), u(n * c.hidden) {}
};

void Engine::run_layer(int64_t l, KVCache& cache, int64_t cl, float* x, int64_t n, Scratch& s, float* probs,
                       LinearInputs* inputs) const {
  const model::Config& c = w_.config;
  const int64_t D = c.dim, Q = c.q_dim(), KV = c.kv_dim(), Hd = c.head_dim, F = c.hidden;
  const int64_t p0 = cache.len;
  const model::LayerWeights& L = w_.layers[l];
  const model::Rotation* rot = w_.rotation.get();  // QuaRot's online rotations, when rotated
  // Attention block.
  kernels::rmsnorm(x, L.attn_norm.data(), n, D, c.norm_eps, s.xn.data());
  if (inputs) inputs->attn_in.assign(s.xn.begin(), s.xn.begin() + n * D);
  kernels::linear_forward(L.q, s.xn.data(), n, s.q.data());
  kernels::linear_forward(L.k, s.xn.data(), n, s.k.data());
  kernels::linear_forward(L.v, s.xn.data(), n, s.v.data());
#pragma omp parallel for if (n > 8)
  for (int64_t t = 0; t < n; ++t) {
    kernels::rope_rotate(&s.q[t * Q], c.n_heads, Hd, p0 + t, rope_);
    kernels::rope_rotate(&s.k[t * KV], c.n_kv_heads, Hd, p0 + t, rope_);
    if (rot) {  // per-head Hadamard: q·k is unchanged, the cache holds (and quantizes) rotated keys
      kernels::hadamard_rows(rot->head, &s.q[t * Q], c.n_heads);
      kernels::hadamard_rows(rot->head, &s.k[t * KV], c.n_kv_heads);
    }
    for (int64_t h = 0; h < c.n_kv_heads; ++h) {
      float* kd = cache.k_at(cl, h, p0 + t);
      float* vd = cache.v_at(cl, h, p0 + t);
      std::memcpy(kd, &s.k[t * KV + h * Hd], Hd * sizeof(float));
      std::memcpy(vd, &s.v[t * KV + h * Hd], Hd * sizeof(float));
      // Every new token's K and V are quantized as they enter the cache (the reference's
      // dynamic per-token, per-head quantizer).
      if (cache.kv_bits < 16) {
        kernels::fake_quantize_kv(kd, Hd, cache.kv_bits);
        kernels::fake_quantize_kv(vd, Hd, cache.kv_bits);
      }
    }
  }
  kernels::AttentionShape shape{n, p0, c.n_heads, c.n_kv_heads, Hd, cache.capacity};
  kernels::attention(shape, s.q.data(), cache.k[cl].data(), cache.v[cl].data(), s.att.data(), probs);
  if (inputs) inputs->o_in.assign(s.att.begin(), s.att.begin() + n * Q);
  kernels::linear_forward(L.o, s.att.data(), n, s.xn.data());
  for (int64_t i = 0; i < n * D; ++i) x[i] += s.xn[i];
  // Feed-forward block.
  kernels::rmsnorm(x, L.ffn_norm.data(), n, D, c.norm_eps, s.xn.data());
  if (inputs) inputs->ffn_in.assign(s.xn.begin(), s.xn.begin() + n * D);
  kernels::linear_forward(L.gate, s.xn.data(), n, s.g.data());
  kernels::linear_forward(L.up, s.xn.data(), n, s.u.data());
  kernels::swiglu(s.g.data(), s.u.data(), n * F);
  if (rot) kernels::hadamard_rows(rot->down, s.g.data(), n);  // the rotation down_proj absorbed
  if (inputs) inputs->down_in.assign(s.g.begin(), s.g.begin() + n * F);
  kernels::linear_forward(L.down, s.g.data(), n, s.xn.data());
  for (int64_t i = 0; i < n * D; ++i) x[i] += s.xn[i];
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
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.vocab) fail("forward: token id ", tokens[t], " is outside the vocabulary");
    std::memcpy(&x[t * D], &w_.embed[static_cast<int64_t>(tokens[t]) * D], D * sizeof(float));
  }
  if (taps.layer_outputs) taps.layer_outputs->assign(c.n_layers, {});
  if (taps.attention_probs) taps.attention_probs->assign(c.n_layers, {});

  Scratch s(c, n);
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

void Engine::layer_forward(int64_t layer, float* x, int64_t n, LinearInputs* inputs) const {
  const model::Config& c = w_.config;
  if (layer < 0 || layer >= c.n_layers) fail("layer_forward: layer ", layer, " is outside 0..", c.n_layers - 1);
  if (n > c.max_pos) fail("layer_forward: ", n, " tokens exceed max_position_embeddings ", c.max_pos);
  if (n <= 0) return;
  KVCache one;  // a cache of this one layer
  one.n_layers = 1, one.n_kv_heads = c.n_kv_heads, one.head_dim = c.head_dim, one.capacity = n;
  one.k.assign(1, std::vector<float>(c.n_kv_heads * n * c.head_dim));
  one.v.assign(1, std::vector<float>(c.n_kv_heads * n * c.head_dim));
  Scratch s(c, n);
  run_layer(layer, one, 0, x, n, s, nullptr, inputs);
}

}  // namespace ikv::engine
