// Dense GEMMs in nn.Linear orientation: Y[M,N] = X[M,K] · W[N,K]^T, fp32 output.
// The fast versions call oneDNN's matmul (its JIT picks AVX-512/AMX kernels and uses the OpenMP
// threads); the reference twin is a plain loop with double accumulation that tests compare against.
#pragma once
#include <cstdint>

namespace ikv::kernels {

void gemm_f32(const float* X, int64_t M, int64_t K, const float* W, int64_t N, float* Y);
// W in bf16 (as stored for the bf16 compute option); X is rounded to bf16 on the fly; fp32 output.
void gemm_bf16(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y);
void gemm_reference(const float* X, int64_t M, int64_t K, const float* W, int64_t N, float* Y);

}  // namespace ikv::kernels
