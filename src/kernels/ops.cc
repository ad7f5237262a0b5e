#include "kernels/ops.h"

#include <immintrin.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "io/error.h"
#include "kernels/packed_attention.h"

namespace ikv::kernels {

void rmsnorm(const float* x, const float* weight, int64_t n, int64_t d, float eps, float* out) {
#pragma omp parallel for if (n > 16)
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * d;
    float ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += xt[i] * xt[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
    float* ot = out + t * d;
    for (int64_t i = 0; i < d; ++i) ot[i] = weight[i] * (xt[i] * inv);
  }
}

RopeTable make_rope_table(int64_t head_dim, int64_t max_pos, float theta, const RopeScaling& scaling) {
  RopeTable r;
  r.half = head_dim / 2;
  r.max_pos = max_pos;
  r.cos.resize(max_pos * r.half);
  r.sin.resize(max_pos * r.half);
  for (int64_t i = 0; i < r.half; ++i) {
    float inv_freq = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
    if (scaling.factor > 0) {  // transformers' _compute_llama3_parameters, in fp32 as there
      const float old_len = static_cast<float>(scaling.original_max_pos);
      const float wavelen = 2.0f * static_cast<float>(M_PI) / inv_freq;
      const float low_wavelen = old_len / scaling.low_freq_factor, high_wavelen = old_len / scaling.high_freq_factor;
      const float scaled = wavelen > low_wavelen ? inv_freq / scaling.factor : inv_freq;
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        const float smooth = (old_len / wavelen - scaling.low_freq_factor) /
                             (scaling.high_freq_factor - scaling.low_freq_factor);
        inv_freq = (1 - smooth) * scaled / scaling.factor + smooth * scaled;
      } else {
        inv_freq = scaled;
      }
    }
    for (int64_t p = 0; p < max_pos; ++p) {
      const float angle = static_cast<float>(p) * inv_freq;
      r.cos[p * r.half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      r.sin[p * r.half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
  return r;
}

void swiglu(float* gate, const float* up, int64_t n) {
#pragma omp parallel for simd if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}


template <typename T>
void attention(const AttentionShape& s, const T* q, const T* k_cache, const T* v_cache, T* out, T* probs_out) {
  if (s.packed) {
    if (probs_out) fail("attention: probabilities of a packed batch are not recorded");
    return packed_attention(s, q, k_cache, v_cache, out);
  }
  using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::OuterStride<>;
  const int64_t keys = s.p0 + s.n, d = s.head_dim, row = s.n_heads * d;
  const int64_t group = s.n_heads / s.n_kv_heads;
  const T scale = T(1) / std::sqrt(static_cast<T>(d));
#pragma omp parallel for schedule(dynamic)
  for (int64_t h = 0; h < s.n_heads; ++h) {
    const int64_t g = h / group;
    Eigen::Map<const RowMat, 0, Stride> Q(q + h * d, s.n, d, Stride(row));
    Eigen::Map<const RowMat> K(k_cache + g * s.cap * d, keys, d);
    Eigen::Map<const RowMat> V(v_cache + g * s.cap * d, keys, d);
    RowMat S = (Q * K.transpose()) * scale;  // [n, keys]
    for (int64_t i = 0; i < s.n; ++i) {
      T* r = S.row(i).data();
      const int64_t last = s.p0 + i;  // causal: query i sees cache positions first..p0+i
      const int64_t first = s.window > 0 ? std::max<int64_t>(0, last - s.window + 1) : 0;
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = first; j <= last; ++j) mx = std::max(mx, r[j]);
      T sum = 0;
      for (int64_t j = first; j <= last; ++j) sum += (r[j] = std::exp(r[j] - mx));
      const T inv = T(1) / sum;
      for (int64_t j = first; j <= last; ++j) r[j] *= inv;
      for (int64_t j = 0; j < first; ++j) r[j] = 0;
      for (int64_t j = last + 1; j < keys; ++j) r[j] = 0;
    }
    Eigen::Map<RowMat, 0, Stride> O(out + h * d, s.n, d, Stride(row));
    O.noalias() = S * V;
    if (probs_out) std::copy(S.data(), S.data() + s.n * keys, probs_out + h * s.n * keys);
  }
}
template void attention<float>(const AttentionShape&, const float*, const float*, const float*, float*, float*);
template void attention<double>(const AttentionShape&, const double*, const double*, const double*, double*,
                                double*);

void attention_reference(const AttentionShape& s, const float* q, const float* k_cache, const float* v_cache,
                         float* out) {
  const int64_t d = s.head_dim, row = s.n_heads * d, group = s.n_heads / s.n_kv_heads;
  std::vector<double> p;
  if (s.packed) return packed_attention_reference(s, q, k_cache, v_cache, out);
  for (int64_t h = 0; h < s.n_heads; ++h) {
    const float* K = k_cache + (h / group) * s.cap * d;
    const float* V = v_cache + (h / group) * s.cap * d;
    for (int64_t i = 0; i < s.n; ++i) {
      const float* qi = q + i * row + h * d;
      const int64_t len = s.p0 + i + 1;
      const int64_t first = s.window > 0 ? std::max<int64_t>(0, len - s.window) : 0;
      p.assign(len, 0);
      double mx = -1e300, sum = 0;
      for (int64_t j = first; j < len; ++j) {
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += double(qi[c]) * K[j * d + c];
        p[j] = dot / std::sqrt(double(d));
        mx = std::max(mx, p[j]);
      }
      for (int64_t j = first; j < len; ++j) sum += (p[j] = std::exp(p[j] - mx));
      for (int64_t c = 0; c < d; ++c) {
        double acc = 0;
        for (int64_t j = first; j < len; ++j) acc += p[j] / sum * V[j * d + c];
        out[i * row + h * d + c] = static_cast<float>(acc);
      }
    }
  }
}

}  // namespace ikv::kernels
