#include "intactkv/backward.h"

#include <cstring>

#include "intactkv/backward_ops.h"
#include "io/error.h"
#include "kernels/int8_gemm.h"
#include "kernels/linear.h"
#include "kernels/kv_quant.h"

namespace ikv::intactkv {

using detail::AttnDims;

DenseModel make_dense_model(const model::Weights& w) {
  const model::Config& c = w.config;
  DenseModel m;
  m.weights = &w;
  m.rope = kernels::make_rope_table(c.head_dim, c.max_pos, c.rope_theta);
  m.rotation = w.rotation.get();
  if (!w.layers.empty()) m.act_bits = w.layers[0].q.act_quant.bits, m.act_clip = w.layers[0].q.act_quant.clip;
  for (const model::LayerWeights& L : w.layers) {
    DenseLayer d;
    d.q = kernels::linear_dense_weight(L.q);
    d.k = kernels::linear_dense_weight(L.k);
    d.v = kernels::linear_dense_weight(L.v);
    d.o = kernels::linear_dense_weight(L.o);
    d.gate = kernels::linear_dense_weight(L.gate);
    d.up = kernels::linear_dense_weight(L.up);
    d.down = kernels::linear_dense_weight(L.down);
    m.layers.push_back(std::move(d));
  }
  return m;
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

// What one layer computes before its down projection; recomputed from the layer input in the backward.
template <typename T>
struct LayerActs {
  std::vector<T> xn, q, att, probs, h, hn, g, u;  // q after RoPE; probs [heads, n, P+n]
};

// Runs layer l from its input x up to the FFN's gate/up products. K/V ([kv_heads, P+n, hd]) hold
// the prefix at rows 0..P-1; with fill_kv the new tokens' keys/values are computed, rotated,
// quantized (kv_bits < 16, as engine::Engine does) and written to rows P.., else they are there.
template <typename T>
void layer_front(const DenseModel& m, int64_t l, const T* x, const AttnDims& s, int kv_bits, bool fill_kv,
                 bool keep_probs, T* K, T* V, LayerActs<T>& a, KvQuantError<T>* kv_error) {
  const model::Config& c = m.config();
  const model::LayerWeights& W = m.weights->layers[l];
  const DenseLayer& dl = m.layers[l];
  const int64_t n = s.n, P = s.P, Tn = s.keys(), D = c.dim, Qd = c.q_dim(), KVd = c.kv_dim(), Hd = c.head_dim;
  a.xn.resize(n * D), a.q.resize(n * Qd), a.att.resize(n * Qd), a.h.resize(n * D), a.hn.resize(n * D);
  a.g.resize(n * c.hidden), a.u.resize(n * c.hidden);
  detail::rmsnorm(x, W.attn_norm.data(), n, D, c.norm_eps, a.xn.data());
  std::vector<T> qbuf;
  const T* xin = linear_input(m, a.xn.data(), n, D, qbuf);
  detail::linear(xin, n, D, dl.q.data(), Qd, a.q.data());
  std::vector<T> k, v;
  if (fill_kv) {
    k.resize(n * KVd), v.resize(n * KVd);
    detail::linear(xin, n, D, dl.k.data(), KVd, k.data());
    detail::linear(xin, n, D, dl.v.data(), KVd, v.data());
  }
#pragma omp parallel for if (n * Qd > detail::kParallelWork)
  for (int64_t t = 0; t < n; ++t) {
    kernels::rope_rotate(&a.q[t * Qd], c.n_heads, Hd, P + t, m.rope, T(1));
    if (m.rotation) kernels::hadamard_rows(m.rotation->head, &a.q[t * Qd], c.n_heads);
    if (!fill_kv) continue;
    kernels::rope_rotate(&k[t * KVd], c.n_kv_heads, Hd, P + t, m.rope, T(1));
    if (m.rotation) kernels::hadamard_rows(m.rotation->head, &k[t * KVd], c.n_kv_heads);
    for (int64_t g = 0; g < c.n_kv_heads; ++g) {
      T* kd = &K[(g * Tn + P + t) * Hd];
      T* vd = &V[(g * Tn + P + t) * Hd];
      std::copy_n(&k[t * KVd + g * Hd], Hd, kd);
      std::copy_n(&v[t * KVd + g * Hd], Hd, vd);
      if (kv_bits >= 16) continue;
      T* ke = kv_error ? &kv_error->k[l][t * KVd + g * Hd] : nullptr;
      T* ve = kv_error ? &kv_error->v[l][t * KVd + g * Hd] : nullptr;
      if (kv_error && kv_error->replay) {
        for (int64_t i = 0; i < Hd; ++i) kd[i] += ke[i], vd[i] += ve[i];
        continue;
      }
      fake_quantize(kd, Hd, kv_bits);
      fake_quantize(vd, Hd, kv_bits);
      if (kv_error)
        for (int64_t i = 0; i < Hd; ++i) ke[i] = kd[i] - k[t * KVd + g * Hd + i], ve[i] = vd[i] - v[t * KVd + g * Hd + i];
    }
  }
  if (keep_probs) a.probs.resize(c.n_heads * n * Tn);
  detail::attention_forward(s, a.q.data(), K, V, a.att.data(), keep_probs ? a.probs.data() : nullptr);
  detail::linear(linear_input(m, a.att.data(), n, Qd, qbuf), n, Qd, dl.o.data(), D, a.h.data());
  for (int64_t i = 0; i < n * D; ++i) a.h[i] += x[i];
  detail::rmsnorm(a.h.data(), W.ffn_norm.data(), n, D, c.norm_eps, a.hn.data());
  xin = linear_input(m, a.hn.data(), n, D, qbuf);
  detail::linear(xin, n, D, dl.gate.data(), c.hidden, a.g.data());
  detail::linear(xin, n, D, dl.up.data(), c.hidden, a.u.data());
}

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

  // Forward. Always kept for the backward (one sample): the residual stream entering every layer
  // and leaving the last (xs, (L+1)·n·dim) and every layer's keys/values over all P+n positions.
  // Each layer's other activations (normed inputs, q, attention probabilities and output, h, the
  // FFN's gate/up) are kept too when all layers' fit in keep_activation_bytes, else recomputed
  // from xs[l] one layer at a time in the backward (+~2/3 of a forward). For LLaMA-7B × 1024
  // tokens they are ~310 MB a layer (the probabilities 32 heads × 1024 × 1060 × 4 B of it), 10 GB
  // for 32 layers: recompute. For testbed-26M × 512 tokens, ~110 MB in all: keep.
  const int64_t act_bytes = L * n * (3 * D + 2 * Qd + 2 * F + c.n_heads * Tn) * static_cast<int64_t>(sizeof(T));
  const bool keep = grad && act_bytes <= keep_activation_bytes;
  std::vector<std::vector<T>> xs(L + 1, std::vector<T>(n * D)), K(L), V(L);
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.vocab) fail("calibration: token id ", tokens[t], " is outside the vocabulary");
    const float* e = &m.weights->embed[static_cast<int64_t>(tokens[t]) * D];
    std::copy_n(e, D, &xs[0][t * D]);
  }
  std::vector<LayerActs<T>> kept(keep ? L : 0);
  LayerActs<T> scratch;
  std::vector<T> act(n * F), down(n * D), act_q;
  for (int64_t l = 0; l < L; ++l) {
    K[l].resize(KVH * Tn * Hd), V[l].resize(KVH * Tn * Hd);
    for (int64_t g = 0; g < KVH; ++g) {
      std::copy_n(&prefix.key[l][g * P * Hd], P * Hd, &K[l][g * Tn * Hd]);
      std::copy_n(&prefix.value[l][g * P * Hd], P * Hd, &V[l][g * Tn * Hd]);
    }
    LayerActs<T>& a = keep ? kept[l] : scratch;
    layer_front(m, l, xs[l].data(), dims, kv_bits, /*fill_kv=*/true, /*keep_probs=*/keep, K[l].data(), V[l].data(), a,
                kv_error);
    for (int64_t i = 0; i < n * F; ++i) act[i] = a.g[i] * detail::sigmoid(a.g[i]) * a.u[i];
    if (m.rotation) kernels::hadamard_rows(m.rotation->down, act.data(), n);
    detail::linear(linear_input(m, act.data(), n, F, act_q), n, F, m.layers[l].down.data(), D, down.data());
    for (int64_t i = 0; i < n * D; ++i) xs[l + 1][i] = a.h[i] + down[i];
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
  std::vector<T> dx(n * D, T(0)), dg(n * F), du(n * F), dhn(n * D), dh(n * D), datt(n * Qd), dq(n * Qd);
  std::vector<T> dK(KVH * Tn * Hd), dV(KVH * Tn * Hd), dk(n * KVd), dv(n * KVd), dxn(n * D);
  for (int64_t l = L - 1; l >= 0; --l) {
    const DenseLayer& dl = m.layers[l];
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < D; ++i) {
        const int64_t at = targets.rows[r] * D + i;
        dx[at] += (xs[l + 1][at] - static_cast<T>(targets.layers[l][r * D + i])) * scale;
      }
    if (!keep)
      layer_front(m, l, xs[l].data(), dims, kv_bits, /*fill_kv=*/false, /*keep_probs=*/true, K[l].data(), V[l].data(),
                  scratch, static_cast<KvQuantError<T>*>(nullptr));
    const LayerActs<T>& a = keep ? kept[l] : scratch;

    // FFN: out = h + down(silu(g) ⊙ u), silu'(g) = σ(g)(1 + g(1 − σ(g))).
    detail::linear_input_grad(dx.data(), n, D, dl.down.data(), F, dg.data(), false);
    if (m.rotation) kernels::hadamard_rows_inverse(m.rotation->down, dg.data(), n);  // VJP of a ← a H_f
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
      if (m.rotation) {  // VJP of the per-head rotation after RoPE
        kernels::hadamard_rows_inverse(m.rotation->head, &dq[t * Qd], c.n_heads);
        kernels::hadamard_rows_inverse(m.rotation->head, &dk[t * KVd], KVH);
      }
      kernels::rope_rotate(&dq[t * Qd], c.n_heads, Hd, P + t, m.rope, T(-1));
      kernels::rope_rotate(&dk[t * KVd], KVH, Hd, P + t, m.rope, T(-1));
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
