// Dense GEMMs in nn.Linear orientation: Y[M,N] = X[M,K] · W[N,K]^T, fp32 output.
// The fast versions call oneDNN's matmul (its JIT picks AVX-512/AMX kernels and uses the OpenMP
// threads); the reference twin is a plain loop with double accumulation that tests compare against.
#pragma once
#include <cstdint>

#include "kernels/half_matrix.h"

namespace ikv::kernels {

// fp32: panels of 64 or 128 rows of W, one single-threaded oneDNN matmul each, spread over the
// threads (gemm.cc, panel_gemm, says why).
void gemm_f32(const float* X, int64_t M, int64_t K, const float* W, int64_t N, float* Y);
// W in bf16 (as stored for the bf16 compute option); X is rounded to bf16 on the fly; fp32 output.
void gemm_bf16(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y);
// Y = X · f32(W)ᵀ for W [N, K] in 16-bit storage, without an fp32 copy of W: each thread upcasts
// panels of rows of W and multiplies them as gemm_f32 multiplies its panels, so the result is
// bit for bit gemm_f32 on the upcast W (the tests check it); each weight is read once, in 16 bits.
void gemm_f32_half(const float* X, int64_t M, int64_t K, const uint16_t* W, Half type, int64_t N, float* Y);
void gemm_reference(const float* X, int64_t M, int64_t K, const float* W, int64_t N, float* Y);

}  // namespace ikv::kernels
