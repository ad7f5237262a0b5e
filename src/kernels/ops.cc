#include "kernels/ops.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

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

RopeTable make_rope_table(int64_t head_dim, int64_t max_pos, float theta) {
  RopeTable r;
  r.half = head_dim / 2;
  r.max_pos = max_pos;
  r.cos.resize(max_pos * r.half);
  r.sin.resize(max_pos * r.half);
  for (int64_t i = 0; i < r.half; ++i) {
    const float inv_freq = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
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

void attention(const AttentionShape& s, const float* q, const float* k_cache, const float* v_cache, float* out,
               float* probs_out) {
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::OuterStride<>;
  const int64_t T = s.p0 + s.n, d = s.head_dim, row = s.n_heads * d;
  const int64_t group = s.n_heads / s.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
#pragma omp parallel for schedule(dynamic)
  for (int64_t h = 0; h < s.n_heads; ++h) {
    const int64_t g = h / group;
    Eigen::Map<const RowMat, 0, Stride> Q(q + h * d, s.n, d, Stride(row));
    Eigen::Map<const RowMat> K(k_cache + g * s.cap * d, T, d);
    Eigen::Map<const RowMat> V(v_cache + g * s.cap * d, T, d);
    RowMat S = (Q * K.transpose()) * scale;  // [n, T]
    for (int64_t i = 0; i < s.n; ++i) {
      float* r = S.row(i).data();
      const int64_t last = s.p0 + i;  // causal: query i sees cache positions 0..p0+i
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j <= last; ++j) mx = std::max(mx, r[j]);
      float sum = 0;
      for (int64_t j = 0; j <= last; ++j) sum += (r[j] = std::exp(r[j] - mx));
      const float inv = 1.0f / sum;
      for (int64_t j = 0; j <= last; ++j) r[j] *= inv;
      for (int64_t j = last + 1; j < T; ++j) r[j] = 0;
    }
    Eigen::Map<RowMat, 0, Stride> O(out + h * d, s.n, d, Stride(row));
    O.noalias() = S * V;
    if (probs_out) std::copy(S.data(), S.data() + s.n * T, probs_out + h * s.n * T);
  }
}

void attention_reference(const AttentionShape& s, const float* q, const float* k_cache, const float* v_cache,
                         float* out) {
  const int64_t d = s.head_dim, row = s.n_heads * d, group = s.n_heads / s.n_kv_heads;
  std::vector<double> p;
  for (int64_t h = 0; h < s.n_heads; ++h) {
    const float* K = k_cache + (h / group) * s.cap * d;
    const float* V = v_cache + (h / group) * s.cap * d;
    for (int64_t i = 0; i < s.n; ++i) {
      const float* qi = q + i * row + h * d;
      const int64_t len = s.p0 + i + 1;
      p.assign(len, 0);
      double mx = -1e300, sum = 0;
      for (int64_t j = 0; j < len; ++j) {
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += double(qi[c]) * K[j * d + c];
        p[j] = dot / std::sqrt(double(d));
        mx = std::max(mx, p[j]);
      }
      for (int64_t j = 0; j < len; ++j) sum += (p[j] = std::exp(p[j] - mx));
      for (int64_t c = 0; c < d; ++c) {
        double acc = 0;
        for (int64_t j = 0; j < len; ++j) acc += p[j] / sum * V[j * d + c];
        out[i * row + h * d + c] = static_cast<float>(acc);
      }
    }
  }
}

}  // namespace ikv::kernels
