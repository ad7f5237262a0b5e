// The ops of the LLaMA layer and their vector-Jacobian products, for the IntactKV calibration
// pass (intactkv/backward.cc). Templated on the scalar: float is the training path (matmuls on
// oneDNN), double exists so the gradient check can compare against finite differences without
// fp32 noise. Numerics of the float forward follow kernels/ops.cc (fp32 sums, std::exp).
// Parallel loops start only above a few ten thousand values of work: OpenMP's fork/join costs more
// than it saves below that, and far more when other processes hold the cores.
// Internal to intactkv; not part of the public API.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/ops.h"

namespace ikv::intactkv::detail {

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Stride = Eigen::OuterStride<>;

// Y[M,N] = X[M,K] · W[N,K]ᵀ (nn.Linear orientation; W is the dense fp32 weight).
void linear(const float* X, int64_t M, int64_t K, const float* W, int64_t N, float* Y);
void linear(const double* X, int64_t M, int64_t K, const float* W, int64_t N, double* Y);
// dX[M,K] = dY[M,N] · W[N,K] (or += with accumulate): the input gradient of that linear.
void linear_input_grad(const float* dY, int64_t M, int64_t N, const float* W, int64_t K, float* dX,
                       bool accumulate);
void linear_input_grad(const double* dY, int64_t M, int64_t N, const float* W, int64_t K, double* dX,
                       bool accumulate);

template <typename T>
T rms_inverse(const T* x, int64_t d, float eps) {
  T ss = 0;
  for (int64_t i = 0; i < d; ++i) ss += x[i] * x[i];
  return T(1) / std::sqrt(ss / static_cast<T>(d) + static_cast<T>(eps));
}

constexpr int64_t kParallelWork = int64_t(1) << 15;

template <typename T>
void rmsnorm(const T* x, const float* w, int64_t n, int64_t d, float eps, T* out) {
#pragma omp parallel for if (n * d > kParallelWork)
  for (int64_t t = 0; t < n; ++t) {
    const T inv = rms_inverse(x + t * d, d, eps);
    for (int64_t i = 0; i < d; ++i) out[t * d + i] = static_cast<T>(w[i]) * (x[t * d + i] * inv);
  }
}

// y = w ⊙ x · r with r = (mean(x²) + eps)^-½:  dx = r (w ⊙ dy) − x r³/d · Σ w ⊙ dy ⊙ x.
// Adds into dx.
template <typename T>
void rmsnorm_backward(const T* x, const float* w, const T* dy, int64_t n, int64_t d, float eps, T* dx) {
#pragma omp parallel for if (n * d > kParallelWork)
  for (int64_t t = 0; t < n; ++t) {
    const T* xt = x + t * d;
    const T* gt = dy + t * d;
    const T r = rms_inverse(xt, d, eps);
    T dot = 0;
    for (int64_t i = 0; i < d; ++i) dot += static_cast<T>(w[i]) * gt[i] * xt[i];
    const T c = r * r * r / static_cast<T>(d) * dot;
    for (int64_t i = 0; i < d; ++i) dx[t * d + i] += r * static_cast<T>(w[i]) * gt[i] - xt[i] * c;
  }
}

template <typename T>
T sigmoid(T g) {
  return T(1) / (T(1) + std::exp(-g));
}

// Causal GQA attention of n queries at positions P..P+n-1 over keys/values at 0..P+n-1, where
// positions 0..P-1 are the trainable prefix. K/V: [n_kv_heads, P+n, head_dim]; q/out: [n, H·hd].
struct AttnDims {
  int64_t n = 0, P = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int64_t keys() const { return P + n; }
};

// VJP of kernels::attention (p0 = P, cap = P+n): dq = [n, H·hd]; dK/dV = [n_kv_heads, P+n, hd]
// (overwritten). With A the probabilities: dV = Aᵀ dO, dA = dO Vᵀ, dS = A ⊙ (dA − rowsum(A ⊙ dA)), dQ = dS K·scale,
// dK = dSᵀ Q·scale; masked entries (causal, sliding window) have A = 0, so their dS is 0 without a mask. One thread per kv
// head sums its query heads in a fixed order: the result does not depend on the thread count.
template <typename T>
void attention_backward(const AttnDims& s, const T* q, const T* K, const T* V, const T* probs, const T* dout,
                        T* dq, T* dK, T* dV) {
  const int64_t Tn = s.keys(), d = s.head_dim, row = s.n_heads * d, group = s.n_heads / s.n_kv_heads;
  const T scale = T(1) / std::sqrt(static_cast<T>(d));
#pragma omp parallel for schedule(dynamic) if (s.n * Tn * d > kParallelWork)
  for (int64_t g = 0; g < s.n_kv_heads; ++g) {
    Eigen::Map<const RowMat<T>> Kg(K + g * Tn * d, Tn, d), Vg(V + g * Tn * d, Tn, d);
    Eigen::Map<RowMat<T>> dKg(dK + g * Tn * d, Tn, d), dVg(dV + g * Tn * d, Tn, d);
    dKg.setZero();
    dVg.setZero();
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      Eigen::Map<const RowMat<T>> A(probs + h * s.n * Tn, s.n, Tn);
      Eigen::Map<const RowMat<T>, 0, Stride> Q(q + h * d, s.n, d, Stride(row)), dO(dout + h * d, s.n, d, Stride(row));
      dVg.noalias() += A.transpose() * dO;
      RowMat<T> dS = dO * Vg.transpose();
      for (int64_t i = 0; i < s.n; ++i) {
        const T* a = A.row(i).data();
        T* r = dS.row(i).data();
        T dot = 0;
        for (int64_t j = 0; j < Tn; ++j) dot += a[j] * r[j];
        for (int64_t j = 0; j < Tn; ++j) r[j] = a[j] * (r[j] - dot) * scale;
      }
      Eigen::Map<RowMat<T>, 0, Stride> dQ(dq + h * d, s.n, d, Stride(row));
      dQ.noalias() = dS * Kg;
      dKg.noalias() += dS.transpose() * Q;
    }
  }
}

}  // namespace ikv::intactkv::detail
