#include "intactkv/backward.h"

#include <cstring>

#include "engine/decoder_layer.h"
#include "intactkv/backward_ops.h"
#include "io/error.h"
#include "kernels/int8_gemm.h"
#include "kernels/kv_quant.h"
#include "kernels/linear.h"

namespace ikv::intactkv {

using detail::AttnDims;

namespace {

std::shared_ptr<const DenseLayer> dequantize_layer(const model::LayerWeights& L) {
  auto d = std::make_shared<DenseLayer>();
  d->q = kernels::linear_dense_weight(L.q);
  d->k = kernels::linear_dense_weight(L.k);
  d->v = kernels::linear_dense_weight(L.v);
  d->o = kernels::linear_dense_weight(L.o);
  d->gate = kernels::linear_dense_weight(L.gate);
  d->up = kernels::linear_dense_weight(L.up);
  d->down = kernels::linear_dense_weight(L.down);
  return d;
}

}  // namespace

DenseModel make_dense_model(const model::Weights& w, int64_t keep_bytes) {
  const model::Config& c = w.config;
  DenseModel m;
  m.weights = &w;
  m.rope = kernels::make_rope_table(c.head_dim, c.max_pos, c.rope_theta, c.rope_scaling);
  if (!w.layers.empty()) m.act_bits = w.layers[0].q.act_quant.bits, m.act_clip = w.layers[0].q.act_quant.clip;
  m.held = std::make_shared<DenseModel::Held>();
  const int64_t layer_weights = c.dim * (c.q_dim() + 2 * c.kv_dim()) + c.q_dim() * c.dim + 3 * c.dim * c.hidden;
  m.held->keep_all = c.n_layers * layer_weights * int64_t{sizeof(float)} <= keep_bytes;
  m.held->layers.resize(w.layers.size());
  if (m.held->keep_all)
    for (size_t l = 0; l < w.layers.size(); ++l) m.held->layers[l] = dequantize_layer(w.layers[l]);
  return m;
}

std::shared_ptr<const DenseLayer> DenseModel::layer(int64_t l) const {
  std::lock_guard<std::mutex> lock(held->mutex);
  std::shared_ptr<const DenseLayer>& d = held->layers.at(static_cast<size_t>(l));
  if (!d) {
    for (auto& other : held->layers) other.reset();  // keep_all is false: one at a time
    d = dequantize_layer(weights->layers[l]);
  }
  return d;
}

template <typename T>
PrefixKV<T> zero_prefix_kv(const model::Config& c, int64_t P) {
  PrefixKV<T> p;
  p.len = P;
  p.key.assign(c.n_layers, std::vector<T>(c.n_kv_heads * P * c.head_dim, T(0)));
  p.value = p.key;
  return p;
}

namespace {

// The KV-cache quantizer is fp32 (kernels::fake_quantize_kv); the double path rounds through it.
void fake_quantize(float* x, int64_t n, int bits) { kernels::fake_quantize_kv(x, n, bits); }
void fake_quantize(double* x, int64_t n, int bits) {
  std::vector<float> f(x, x + n);
  kernels::fake_quantize_kv(f.data(), n, bits);
  for (int64_t i = 0; i < n; ++i) x[i] = f[i];
}

// The input a decoder linear multiplies: x, or with activation quantization (QuaRot) x quantized
// per token and dequantized in buf, as kernels::linear_forward computes it (fp32 numerics).
template <typename T>
const T* linear_input(const DenseModel& m, const T* x, int64_t n, int64_t d, std::vector<T>& buf) {
  if (m.act_bits >= 16) return x;
  std::vector<float> xf(x, x + n * d), s(n);
  std::vector<int8_t> q(n * d);
  kernels::quantize_per_token(xf.data(), n, d, m.act_bits, m.act_clip, q.data(), s.data());
  buf.resize(n * d);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < d; ++i) buf[t * d + i] = static_cast<float>(q[t * d + i]) * s[t];
  return buf.data();
}

// The calibration backend of engine::decoder_layer: the dequantized weights (DenseModel) in T,
// with the KV quantizer's error recorded or replayed (KvQuantError).
template <typename T>
struct DenseOps {
  using Scalar = T;
  const DenseModel& m;
  int kv_bits;
  KvQuantError<T>* kv_error;

  void rmsnorm(const T* x, const float* weight, int64_t rows, int64_t width, T* out) const {
    detail::rmsnorm(x, weight, rows, width, m.config().norm_eps, out);
  }
  void linear(int64_t l, engine::Proj p, const T* x, int64_t n, T* y) const {
    const model::Config& c = m.config();
    const std::shared_ptr<const DenseLayer> held = m.layer(l);
    const DenseLayer& d = *held;
    struct Shape { const std::vector<float>* w; int64_t in, out; };
    const Shape shapes[] = {{&d.q, c.dim, c.q_dim()},  {&d.k, c.dim, c.kv_dim()},  {&d.v, c.dim, c.kv_dim()},
                            {&d.o, c.q_dim(), c.dim},  {&d.gate, c.dim, c.hidden}, {&d.up, c.dim, c.hidden},
                            {&d.down, c.hidden, c.dim}};
    const Shape& s = shapes[static_cast<int>(p)];
    std::vector<T> buf;
    detail::linear(linear_input(m, x, n, s.in, buf), n, s.in, s.w->data(), s.out, y);
    using LW = model::LayerWeights;
    static constexpr kernels::Linear LW::*kProj[] = {&LW::q, &LW::k, &LW::v, &LW::o, &LW::gate, &LW::up, &LW::down};
    kernels::add_bias((m.weights->layers[l].*kProj[static_cast<int>(p)]).bias, n, y);
  }
  void quantize_kv(int64_t l, int64_t t, int64_t head, T* k, T* v) const {
    if (kv_bits >= 16) return;
    const int64_t Hd = m.config().head_dim, at = t * m.config().kv_dim() + head * Hd;
    if (kv_error && kv_error->replay) {
      for (int64_t i = 0; i < Hd; ++i) k[i] += kv_error->k[l][at + i], v[i] += kv_error->v[l][at + i];
      return;
    }
    const std::vector<T> k0(k, k + Hd), v0(v, v + Hd);
    fake_quantize(k, Hd, kv_bits);
    fake_quantize(v, Hd, kv_bits);
    if (kv_error)
      for (int64_t i = 0; i < Hd; ++i) kv_error->k[l][at + i] = k[i] - k0[i], kv_error->v[l][at + i] = v[i] - v0[i];
  }
  void attention(const kernels::AttentionShape& s, const T* q, const T* K, const T* V, T* out, T* probs) const {
    kernels::attention(s, q, K, V, out, probs);
  }
  void swiglu(T* g, const T* u, int64_t count) const {
    for (int64_t i = 0; i < count; ++i) g[i] = g[i] * detail::sigmoid(g[i]) * u[i];
  }
};

}  // namespace

template <typename T>
SampleLoss prefix_loss(const DenseModel& m, const PrefixKV<T>& prefix, const int32_t* tokens, int64_t n,
                       const SampleTargets& targets, int kv_bits, std::type_identity_t<PrefixKV<T>>* grad,
                       std::type_identity_t<KvQuantError<T>>* kv_error, int64_t keep_activation_bytes) {
  const model::Config& c = m.config();
  const int64_t D = c.dim, Qd = c.q_dim(), KVd = c.kv_dim(), Hd = c.head_dim, F = c.hidden, L = c.n_layers;
  const int64_t P = prefix.len, Tn = P + n, KVH = c.n_kv_heads, rows = static_cast<int64_t>(targets.rows.size());
  if (n <= 0) fail("calibration sample has no tokens after the prefix");
  if (Tn > c.max_pos) fail("calibration sample of ", Tn, " positions exceeds max_position_embeddings ", c.max_pos);
  if (static_cast<int64_t>(prefix.key.size()) != L || static_cast<int64_t>(targets.layers.size()) != L)
    fail("calibration: prefix or targets do not have ", L, " layers");
  for (int64_t r : targets.rows)
    if (r < 0 || r >= n) fail("calibration: loss token ", r, " outside the sample's ", n, " new tokens");
  for (int64_t l = 0; l < L; ++l) {
    if (static_cast<int64_t>(prefix.key[l].size()) != KVH * P * Hd || prefix.value[l].size() != prefix.key[l].size())
      fail("calibration: prefix layer ", l, " has the wrong size for this model");
    if (static_cast<int64_t>(targets.layers[l].size()) != rows * D) fail("calibration: targets of layer ", l, " are not rows x dim");
    if (grad && (grad->key.size() != prefix.key.size() || grad->key[l].size() != prefix.key[l].size() ||
                 grad->value[l].size() != prefix.value[l].size()))
      fail("calibration: the gradient is not shaped like the prefix");
  }
  if (kv_error && !kv_error->replay) {
    kv_error->k.assign(L, std::vector<T>(n * KVd, T(0)));
    kv_error->v = kv_error->k;
  }
  const AttnDims dims{n, P, c.n_heads, KVH, Hd};

  // Forward (engine::decoder_layer). Always kept for the backward (one sample): the residual
  // stream entering every layer and leaving the last (xs, (L+1)·n·dim) and every layer's
  // keys/values over all P+n positions. Each layer's tape (q, attention probabilities, h, the FFN's
  // gate/up) is kept too when all layers' fit in keep_activation_bytes, else the backward reruns
  // the layer from xs[l] to record it (+1 forward). For LLaMA-7B × 1024 tokens a tape is ~250 MB
  // (the probabilities 32 heads × 1024 × 1060 × 4 B of it), 8 GB for 32 layers: recompute. For
  // testbed-26M × 512 tokens, ~90 MB in all: keep.
  const int64_t act_bytes = L * n * (D + Qd + 2 * F + c.n_heads * Tn) * static_cast<int64_t>(sizeof(T));
  const bool keep = grad && act_bytes <= keep_activation_bytes;
  std::vector<std::vector<T>> xs(L + 1, std::vector<T>(n * D)), K(L), V(L);
  std::vector<float> e(D);
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.vocab) fail("calibration: token id ", tokens[t], " is outside the vocabulary");
    m.weights->embed.row(tokens[t], e.data());
    std::copy_n(e.data(), D, &xs[0][t * D]);
  }
  const DenseOps<T> ops{m, kv_bits, kv_error};
  engine::LayerScratch<T> scratch(c, n);
  std::vector<engine::LayerTape<T>> tapes(keep ? L : 0);
  for (int64_t l = 0; l < L; ++l) {
    K[l].resize(KVH * Tn * Hd), V[l].resize(KVH * Tn * Hd);
    for (int64_t g = 0; g < KVH; ++g) {
      std::copy_n(&prefix.key[l][g * P * Hd], P * Hd, &K[l][g * Tn * Hd]);
      std::copy_n(&prefix.value[l][g * P * Hd], P * Hd, &V[l][g * Tn * Hd]);
    }
    xs[l + 1] = xs[l];
    engine::decoder_layer(ops, *m.weights, m.rope, l, xs[l + 1].data(), n, P, {K[l].data(), V[l].data(), Tn}, scratch,
                          nullptr, nullptr, keep ? &tapes[l] : nullptr);
  }

  // Loss: Σ_l Σ_rows Σ_dim (h − h_fp)² / (2 · rows · dim), summed in double.
  SampleLoss loss;
  loss.per_layer.assign(L, 0.0);
  if (rows == 0) return loss;
  for (int64_t l = 0; l < L; ++l) {
    double sum = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < D; ++i) {
        const double diff = static_cast<double>(xs[l + 1][targets.rows[r] * D + i]) - targets.layers[l][r * D + i];
        sum += diff * diff;
      }
    loss.per_layer[l] = sum / (2.0 * rows * D);
    loss.total += loss.per_layer[l];
  }
  if (!grad) return loss;

  // Backward, last layer first; dx is dLoss/d(residual stream after layer l).
  const T scale = T(1) / static_cast<T>(rows * D);
  const model::Weights& w = *m.weights;
  const model::Rotation* rot = w.rotation.get();
  std::vector<T> dx(n * D, T(0)), dg(n * F), du(n * F), dhn(n * D), dh(n * D), datt(n * Qd), dq(n * Qd);
  std::vector<T> dK(KVH * Tn * Hd), dV(KVH * Tn * Hd), dk(n * KVd), dv(n * KVd), dxn(n * D), dqn, dkn;
  for (int64_t l = L - 1; l >= 0; --l) {
    const std::shared_ptr<const DenseLayer> held = m.layer(l);
    const DenseLayer& dl = *held;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < D; ++i) {
        const int64_t at = targets.rows[r] * D + i;
        dx[at] += (xs[l + 1][at] - static_cast<T>(targets.layers[l][r * D + i])) * scale;
      }
    engine::LayerTape<T> rerun;
    if (!keep) {  // rewrites the new tokens' K/V with the same values
      std::vector<T> x = xs[l];
      engine::decoder_layer(ops, *m.weights, m.rope, l, x.data(), n, P, {K[l].data(), V[l].data(), Tn}, scratch,
                            nullptr, nullptr, &rerun);
    }
    const engine::LayerTape<T>& a = keep ? tapes[l] : rerun;

    // FFN: out = h + down(silu(g) ⊙ u), silu'(g) = σ(g)(1 + g(1 − σ(g))).
    detail::linear_input_grad(dx.data(), n, D, dl.down.data(), F, dg.data(), false);
    if (rot) kernels::hadamard_rows_inverse(rot->down, dg.data(), n);  // VJP of a ← a H_f
#pragma omp parallel for simd if (n * F > detail::kParallelWork)
    for (int64_t i = 0; i < n * F; ++i) {
      const T g = a.g[i], sg = detail::sigmoid(g), ds = dg[i];
      du[i] = ds * g * sg;
      dg[i] = ds * a.u[i] * sg * (T(1) + g * (T(1) - sg));
    }
    detail::linear_input_grad(dg.data(), n, F, dl.gate.data(), D, dhn.data(), false);
    detail::linear_input_grad(du.data(), n, F, dl.up.data(), D, dhn.data(), true);
    dh = dx;
    detail::rmsnorm_backward(a.h.data(), w.layers[l].ffn_norm.data(), dhn.data(), n, D, c.norm_eps, dh.data());

    // Attention: h = x + o(attention(q, [prefix K; new K], [prefix V; new V])).
    detail::linear_input_grad(dh.data(), n, D, dl.o.data(), Qd, datt.data(), false);
    detail::attention_backward(dims, a.q.data(), K[l].data(), V[l].data(), a.probs.data(), datt.data(), dq.data(),
                               dK.data(), dV.data());
    for (int64_t g = 0; g < KVH; ++g)
      for (int64_t i = 0; i < P * Hd; ++i) {
        grad->key[l][g * P * Hd + i] += dK[g * Tn * Hd + i];
        grad->value[l][g * P * Hd + i] += dV[g * Tn * Hd + i];
      }
    if (l == 0) break;  // nothing below layer 0 is trained

    // The new tokens' K/V passed the cache quantizer: straight-through estimator (identity
    // gradient). Then the VJPs of the QuaRot head rotation and of RoPE are the inverse rotations.
    // (The activation quantizers are straight-through too: linear_input_grad ignores them.)
#pragma omp parallel for if (n * Qd > detail::kParallelWork)
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t g = 0; g < KVH; ++g) {
        std::copy_n(&dK[(g * Tn + P + t) * Hd], Hd, &dk[t * KVd + g * Hd]);
        std::copy_n(&dV[(g * Tn + P + t) * Hd], Hd, &dv[t * KVd + g * Hd]);
      }
      if (rot) {  // VJP of the per-head rotation after RoPE
        kernels::hadamard_rows_inverse(rot->head, &dq[t * Qd], c.n_heads);
        kernels::hadamard_rows_inverse(rot->head, &dk[t * KVd], KVH);
      }
      kernels::rope_rotate(&dq[t * Qd], c.n_heads, Hd, P + t, m.rope, T(-1));
      kernels::rope_rotate(&dk[t * KVd], KVH, Hd, P + t, m.rope, T(-1));
    }
    if (c.qk_norm) {  // VJP of the per-head norms before RoPE
      dqn.assign(n * Qd, T(0)), dkn.assign(n * KVd, T(0));
      detail::rmsnorm_backward(a.q_in.data(), w.layers[l].q_norm.data(), dq.data(), n * c.n_heads, Hd, c.norm_eps, dqn.data());
      detail::rmsnorm_backward(a.k_in.data(), w.layers[l].k_norm.data(), dk.data(), n * KVH, Hd, c.norm_eps, dkn.data());
      dq.swap(dqn), dk.swap(dkn);
    }
    detail::linear_input_grad(dq.data(), n, Qd, dl.q.data(), D, dxn.data(), false);
    detail::linear_input_grad(dk.data(), n, KVd, dl.k.data(), D, dxn.data(), true);
    detail::linear_input_grad(dv.data(), n, KVd, dl.v.data(), D, dxn.data(), true);
    // dx for the layer below: the residual path plus the attention input path.
    dx = dh;
    detail::rmsnorm_backward(xs[l].data(), w.layers[l].attn_norm.data(), dxn.data(), n, D, c.norm_eps, dx.data());
  }
  return loss;
}

template PrefixKV<float> zero_prefix_kv<float>(const model::Config&, int64_t);
template PrefixKV<double> zero_prefix_kv<double>(const model::Config&, int64_t);
template SampleLoss prefix_loss<float>(const DenseModel&, const PrefixKV<float>&, const int32_t*, int64_t,
                                       const SampleTargets&, int, PrefixKV<float>*, KvQuantError<float>*, int64_t);
template SampleLoss prefix_loss<double>(const DenseModel&, const PrefixKV<double>&, const int32_t*, int64_t,
                                        const SampleTargets&, int, PrefixKV<double>*, KvQuantError<double>*, int64_t);

}  // namespace ikv::intactkv
