// The LLaMA decoder layer, written once. Inference (engine::Engine: fp32 kernels on dense, bf16 or
// packed weights) and the IntactKV calibration (intactkv/backward.cc: the dequantized weights in
// float or double, whose backward reads the tape this forward records) both run this graph, so an
// architecture feature is added here once (and, for calibration, its VJP to the backward).
//
//   xn = rmsnorm(x)·attn_norm;  q, k, v = xn·W_{q,k,v}ᵀ (+ b);  [per-head rmsnorm(q, k): Qwen3]
//   RoPE(q, k) [· H_hd when QuaRot-rotated]
//   cache ← k, v (through the KV quantizer);  att = causal GQA attention [sliding window];  x += att·W_oᵀ
//   hn = rmsnorm(x)·ffn_norm;  g, u = hn·W_{gate,up}ᵀ;  a = silu(g)⊙u [· H_f];  x += a·W_downᵀ
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "io/error.h"
#include "kernels/hadamard.h"
#include "kernels/ops.h"
#include "kernels/packed_attention.h"
#include "model/rotation.h"
#include "model/weights.h"

namespace ikv::engine {

// The projections of a layer, for the backend's linear().
enum class Proj { q, k, v, o, gate, up, down };

// One layer's keys and values as the attention reads them, each [n_kv_heads, capacity, head_dim]:
// a layer of the engine's KVCache, or the calibration's prefix followed by its sample. With
// `packed` the batch is several sequences (kernels::PackedRows): row t runs at position
// packed->row_pos[t], stores its key/value at slot packed->row_slot[t] and attends as its segment
// says (the loglikelihood scorer's packed forward).
template <typename T>
struct LayerKV {
  T* k = nullptr;
  T* v = nullptr;
  int64_t capacity = 0;
  const kernels::PackedRows* packed = nullptr;
};

// The inputs of one decoder layer's linears for a batch of n tokens (what GPTQ's Hessians and AWQ's
// activation statistics are computed from).
struct LinearInputs {
  std::vector<float> attn_in;  // rmsnorm(x) · attn_norm [n, dim]   → q, k, v
  std::vector<float> o_in;     // attention output       [n, q_dim] → o
  std::vector<float> ffn_in;   // rmsnorm(x) · ffn_norm  [n, dim]   → gate, up
  std::vector<float> down_in;  // silu(gate) · up        [n, hidden] → down (· H_f when rotated)
};

// What the calibration's backward reads of one layer's forward: the VJPs of attention (q after RoPE
// and rotation, the probabilities [n_heads, n, p0+n]), of the FFN's RMSNorm (h, the residual
// stream after attention) and of SwiGLU (g and u before it). The layer input and the K/V are the
// caller's already.
template <typename T>
struct LayerTape {
  std::vector<T> q, probs, h, g, u;
  std::vector<T> q_in, k_in;  // q and k before their per-head norms (qk_norm only)
};

template <typename T>
struct LayerScratch {
  std::vector<T> xn, q, k, v, att, g, u;
  LayerScratch(const model::Config& c, int64_t n)
      : xn(n * c.dim), q(n * c.q_dim()), k(n * c.kv_dim()), v(n * c.kv_dim()), att(n * c.q_dim()),
        g(n * c.hidden), u(n * c.hidden) {}
};

// Runs decoder layer l over x [n, dim] (in place) at positions p0..p0+n-1, appending the new
// tokens' keys/values to kv at those positions (positions 0..p0-1 must hold the earlier ones);
// with kv.packed, at the positions and slots it gives instead (p0 is not used).
// Ops, the backend, supplies for its scalar T = Ops::Scalar:
//   rmsnorm(x, weight, rows, width, out)  (in place allowed)
//   linear(l, Proj, x, n, y)            the projection as the model computes it (activation
//                                       quantization included)
//   quantize_kv(l, t, kv_head, k, v)    the KV-cache quantizer on one new token's head (may do nothing)
//   optional: quantizes_keys_before_rope(), requantize_kv(l, p0, n, k_before_rope, v, kv,
//             key_to_cache_form)  a quantizer of the whole cache after the new tokens entered
//   attention(shape, q, K, V, out, probs)
//   swiglu(g, u, count)                 g ← silu(g) ⊙ u
// probs (optional) receives the attention probabilities [n_heads, n, p0+n]; inputs (float only)
// the linears' inputs; tape what the calibration backward needs.
template <class Ops, typename T = typename Ops::Scalar>
void decoder_layer(const Ops& ops, const model::Weights& w, const kernels::RopeTable& rope, int64_t l,
                   std::type_identity_t<T>* x, int64_t n, int64_t p0, std::type_identity_t<LayerKV<T>> kv,
                   std::type_identity_t<LayerScratch<T>>& s, std::type_identity_t<T>* probs = nullptr,
                   LinearInputs* inputs = nullptr, std::type_identity_t<LayerTape<T>>* tape = nullptr) {
  const model::Config& c = w.config;
  const int64_t D = c.dim, Q = c.q_dim(), KV = c.kv_dim(), Hd = c.head_dim, F = c.hidden;
  const model::LayerWeights& L = w.layers[l];
  const model::Rotation* rot = w.rotation.get();  // QuaRot's online rotations, when rotated
  auto record = [n](LinearInputs* in, std::vector<float> LinearInputs::*field, const T* from, int64_t width) {
    if constexpr (std::is_same_v<T, float>)
      if (in) (in->*field).assign(from, from + n * width);
  };
  // Attention block.
  ops.rmsnorm(x, L.attn_norm.data(), n, D, s.xn.data());
  record(inputs, &LinearInputs::attn_in, s.xn.data(), D);
  ops.linear(l, Proj::q, s.xn.data(), n, s.q.data());
  ops.linear(l, Proj::k, s.xn.data(), n, s.k.data());
  ops.linear(l, Proj::v, s.xn.data(), n, s.v.data());
  if (c.qk_norm) {  // Qwen3: RMSNorm over each head of q and k, before RoPE
    if (tape) {
      tape->q_in.assign(s.q.begin(), s.q.begin() + n * Q);
      tape->k_in.assign(s.k.begin(), s.k.begin() + n * KV);
    }
    ops.rmsnorm(s.q.data(), L.q_norm.data(), n * c.n_heads, Hd, s.q.data());
    ops.rmsnorm(s.k.data(), L.k_norm.data(), n * c.n_kv_heads, Hd, s.k.data());
  }
  const kernels::PackedRows* packed = kv.packed;
  if (packed && (probs || tape || packed->rows() != n))
    fail("decoder_layer: a packed batch of ", packed->rows(), " rows with ", n, " tokens, or with probabilities or a tape");
  // A backend that quantizes keys before RoPE (KIVI, engine/kv_scheme.h) takes them from here and
  // rewrites the cache once the new tokens are in (one sequence per forward: Engine::packs_rows).
  std::vector<T> k_before_rope;
  if constexpr (requires { ops.requantize_kv(l, p0, n, s.k.data(), s.v.data(), kv, nullptr); })
    if (ops.quantizes_keys_before_rope()) k_before_rope.assign(s.k.begin(), s.k.begin() + n * KV);
  auto key_to_cache_form = [&](T* key, int64_t pos) {  // one token's keys, all heads
    kernels::rope_rotate(key, c.n_kv_heads, Hd, pos, rope);
    if (rot) kernels::hadamard_rows(rot->head, key, c.n_kv_heads);
  };
#pragma omp parallel for if (n > 8)
  for (int64_t t = 0; t < n; ++t) {
    const int64_t pos = packed ? packed->row_pos[t] : p0 + t, slot = packed ? packed->row_slot[t] : p0 + t;
    kernels::rope_rotate(&s.q[t * Q], c.n_heads, Hd, pos, rope);
    // per-head Hadamard: q·k is unchanged, the cache holds (and quantizes) rotated keys
    if (rot) kernels::hadamard_rows(rot->head, &s.q[t * Q], c.n_heads);
    key_to_cache_form(&s.k[t * KV], pos);
    for (int64_t h = 0; h < c.n_kv_heads; ++h) {
      T* kd = kv.k + (h * kv.capacity + slot) * Hd;
      T* vd = kv.v + (h * kv.capacity + slot) * Hd;
      std::copy_n(&s.k[t * KV + h * Hd], Hd, kd);
      std::copy_n(&s.v[t * KV + h * Hd], Hd, vd);
      ops.quantize_kv(l, t, h, kd, vd);  // every new token's K and V, as they enter the cache
    }
  }
  if constexpr (requires { ops.requantize_kv(l, p0, n, s.k.data(), s.v.data(), kv, nullptr); })
    if (!k_before_rope.empty()) ops.requantize_kv(l, p0, n, k_before_rope.data(), s.v.data(), kv, key_to_cache_form);
  if (tape) {
    tape->q.assign(s.q.begin(), s.q.begin() + n * Q);
    tape->probs.resize(c.n_heads * n * (p0 + n));
    probs = tape->probs.data();
  }
  const kernels::AttentionShape shape{n, p0, c.n_heads, c.n_kv_heads, Hd, kv.capacity, c.sliding_window, packed};
  ops.attention(shape, s.q.data(), kv.k, kv.v, s.att.data(), probs);
  record(inputs, &LinearInputs::o_in, s.att.data(), Q);
  ops.linear(l, Proj::o, s.att.data(), n, s.xn.data());
  for (int64_t i = 0; i < n * D; ++i) x[i] += s.xn[i];
  if (tape) tape->h.assign(x, x + n * D);
  // Feed-forward block.
  ops.rmsnorm(x, L.ffn_norm.data(), n, D, s.xn.data());
  record(inputs, &LinearInputs::ffn_in, s.xn.data(), D);
  ops.linear(l, Proj::gate, s.xn.data(), n, s.g.data());
  ops.linear(l, Proj::up, s.xn.data(), n, s.u.data());
  if (tape) {
    tape->g.assign(s.g.begin(), s.g.begin() + n * F);
    tape->u.assign(s.u.begin(), s.u.begin() + n * F);
  }
  ops.swiglu(s.g.data(), s.u.data(), n * F);
  if (rot) kernels::hadamard_rows(rot->down, s.g.data(), n);  // the rotation down_proj absorbed
  record(inputs, &LinearInputs::down_in, s.g.data(), F);
  ops.linear(l, Proj::down, s.g.data(), n, s.xn.data());
  for (int64_t i = 0; i < n * D; ++i) x[i] += s.xn[i];
}

}  // namespace ikv::engine
