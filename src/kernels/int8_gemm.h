// Integer matmul for activation-quantized linears (QuaRot W4A4): Y = X · Wᵀ with X quantized per
// token and W per output channel, both symmetric, their codes held in int8 (INT4 codes are int8
// values in [-8, 7]):
//
//   Y[m, n] = (Σ_k qx[m, k] · qw[n, k]) · sx[m] · sw[n]
//
// The integer sum runs in oneDNN's s8 × s8 → s32 matmul (AVX-512 VNNI brgemm where the CPU has it),
// exact in int32; the scales are applied in one pass over Y afterwards (oneDNN 2.6's brgemm takes
// no run-time output scales and a per-row scale post-op falls back to its reference kernel).
// The reference twin multiplies the dequantized values (q · s in fp32) in double; the two agree to
// the rounding of that accumulation (~1e-6 relative).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace ikv::kernels {

struct PackedMatrix;

struct Int8MatmulWeights;  // oneDNN's copy of the codes (int8_gemm.cc)

// A weight [rows = N, cols = K] as int8 codes with one scale per row, plus the copy of the codes
// in the blocked layout (and with the s8s8 compensation) oneDNN's matmul reads, made once.
struct Int8Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> q;      // [rows, cols] row-major
  std::vector<float> scale;   // [rows]
  std::shared_ptr<const Int8MatmulWeights> onednn;  // the codes reordered for oneDNN
};

// From codes and per-row scales (q[n, k] is multiplied by scale[n]).
Int8Matrix make_int8_matrix(std::vector<int8_t> q, std::vector<float> scale, int64_t rows, int64_t cols);
// From a packed symmetric per-channel matrix (kernels/packed_matrix.h): the same codes and the
// stored fp16 scales, so dequantize(W) equals q · scale exactly. Other formats: ikv::Error.
Int8Matrix int8_from_packed(const kernels::PackedMatrix& W);

// Per-token symmetric quantization of X [M, K] (QuaRot's ActQuantizer with sym = True):
//   s[m] = clip · max_k |x[m, k]| / (2^(bits-1) − 1)   (1 for an all-zero row),
//   q[m, k] = clamp(round(x / s), −2^(bits-1), 2^(bits-1) − 1)   (round half to even),
// so at 4 bits q ∈ [-8, 7] and -8 occurs only when clip < 1 saturates. bits in 2..8.
void quantize_per_token(const float* X, int64_t M, int64_t K, int bits, float clip, int8_t* q, float* s);
// The same with one scale fixed beforehand for every token (static per-tensor scales, PrefixQuant):
// s[m] = scale, q[m, k] = clamp(round(x / scale), −2^(bits-1), 2^(bits-1) − 1). Where a row's own
// max |x| equals clip-free scale · (2^(bits-1) − 1), the codes equal quantize_per_token's.
void quantize_static(const float* X, int64_t M, int64_t K, int bits, float scale, int8_t* q, float* s);
// q · s back in fp32 (the fake-quantized activations).
void dequantize_per_token(const int8_t* q, const float* s, int64_t M, int64_t K, float* X);

// Y[M, N] = (Xq · Wqᵀ) · sx[m] · sw[n].
void int8_gemm(const int8_t* Xq, const float* sx, int64_t M, const Int8Matrix& W, float* Y);
// The reference: Σ_k (qx · sx)(qw · sw) in double, the fp32 fake-quant values multiplied plainly.
void int8_gemm_reference(const int8_t* Xq, const float* sx, int64_t M, const Int8Matrix& W, float* Y);

}  // namespace ikv::kernels
