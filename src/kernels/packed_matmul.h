// Y = X · Wᵀ with W a packed low-bit matrix (kernels/packed_matrix.h), fp32 in and out.
//
// Regimes (every fast path is checked against packed_matmul_reference in tests):
//  - M <= 4 (decode): codes are decoded in registers and each packed byte is streamed once; scale
//    and zero point are folded out of the inner loop (and + cvt + fma per 16 weights), so speed
//    is bounded by DRAM bandwidth or that decode rate (bench/bench_kernels.cc measures both).
//  - 4 < M < kPanelMinRows: weights dequantized exactly in registers, each used for 8 rows of X.
//  - M >= kPanelMinRows (prefill): each thread dequantizes 64-row panels of W straight into the
//    blocked layout oneDNN's fp32 matmul prefers and runs it on them; the decode cost (~3%)
//    disappears under the M FMAs per weight.
//  - M < kPanelMinRows with bf16 activations: codes become bf16 operands of vdpbf16ps (32
//    multiply-adds per op), half the fp32 decode's vector ops per weight; above 4 rows of X, 4 at
//    a time over each cached stretch of W, about twice the fp32 kernels' speed at M = 8..16
//    (packed_gemv_bf16_avx512.cc).
//  - q8 activations round X (rounded_activations) and take the paths above; the fast q8 kernel
//    runs on a re-laid-out copy of the codes (kernels/q8_tiles.h), kernels::Packed::q8_tiles.
//  - packed_matmul_reference: dequantize() + a naive triple loop in double.
// The AVX-512 decoders handle bits 3 and 4 with groups that are whole 16-code positions (group a
// multiple of 16, or per-channel); everything else takes the portable decoder, which is
// correct for every format.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/cpu.h"

namespace ikv::kernels {

struct PackedMatrix;

// What X is before the product. kFp32: as given. kBf16: rounded to bf16 (nearest even), as oneDNN's
// bf16 matmul does, while the packed weights stay exact: Y = bf16(X)·W'ᵀ with fp32 accumulation.
// The engine's --dtype bf16 runs packed linears this way (kernels::Packed::rounding).
// kQ8: rounded to int8 in blocks of kQ8Block columns (quantize_q8), the activation format of
// llama.cpp's quantized dot products: Y = q8(X)·W'ᵀ (--dtype q8; on VNNI: q8_tiles.h).
enum class Activations { kFp32, kBf16, kQ8 };

// q8 activations: each row of X [M, K] cut into blocks of kQ8Block columns (the last one
// zero-padded), each quantized as quantize_per_token does at 8 bits (kernels/int8_gemm.h):
// s = max|x| / 127, q = round(x / s). q: [M, blocks · kQ8Block], s: [M, blocks].
inline constexpr int64_t kQ8Block = 128;
void quantize_q8(const float* X, int64_t M, int64_t K, int8_t* q, float* s);
// X [M, K] as the kernels read it under `act` (kBf16: bf16-rounded, kQ8: quantize_q8's codes
// times their block scales), as floats.
std::vector<float> rounded_activations(const float* X, int64_t M, int64_t K, Activations act);

// Y[M, rows] = X[M, cols] · Wᵀ, OpenMP-parallel over output features. isa picks the decoder
// (kAuto: AVX-512 when cpu_has_avx512(), which IKV_NO_AVX512=1 turns off).
void packed_matmul(const kernels::PackedMatrix& W, const float* X, int64_t M, float* Y,
                   Isa isa = Isa::kAuto, Activations act = Activations::kFp32);

// dequantize() then Y[m, n] = Σ_k X'[m, k] · W'[n, k] accumulated in double (X' = X rounded as act says).
void packed_matmul_reference(const kernels::PackedMatrix& W, const float* X, int64_t M, float* Y,
                             Activations act = Activations::kFp32);

// From this many rows of X on, packed_matmul dequantizes panels and runs a GEMM on them.
inline constexpr int64_t kPanelMinRows = 24;

namespace detail {

// Up to this many rows of X the fused kernels decode each weight once and use it for every row.
inline constexpr int64_t kFoldedMaxM = 4;

// True when the AVX-512 decoders cover W's format (bits 3/4, group % 16 == 0 or per-channel).
bool avx512_decodes(const kernels::PackedMatrix& W);
// Fused decode + FMA for M < kPanelMinRows (packed_matmul_avx512.cc).
void packed_gemv_avx512(const kernels::PackedMatrix& W, const float* X, int64_t M, float* Y);
// True when packed_gemv_bf16_avx512 runs here and covers W's format: AVX512_BF16 + VBMI + VBMI2, and W4
// groups of 128k / W3 groups of 64k columns or per-channel scales.
bool avx512_bf16_gemv_covers(const kernels::PackedMatrix& W);
// The base c of column k in packed_gemv_bf16_avx512 (a power of two): its code q decodes to the
// bf16 1 + q/c and its x to c·bf16(x), so the sums it accumulates carry c·x on top of q·x.
int bf16_gemv_code_base(int bits, int64_t k);
// Y = bf16(X)·Wᵀ for M < kPanelMinRows on vdpbf16ps (packed_gemv_bf16_avx512.cc).
void packed_gemv_bf16_avx512(const kernels::PackedMatrix& W, const float* X, int64_t M, float* Y);
// out[(n - n0) * ld + k] = dequantized W[n, k] for n in [n0, n1), k < cols; bit-identical to
// kernels::dequantize_rows.
void dequantize_rows_avx512(const kernels::PackedMatrix& W, int64_t n0, int64_t n1, float* out,
                            int64_t ld);

// A [K, np] weight panel in a oneDNN layout with at most one inner block per dimension, n
// innermost: element (k, n) at (k / kb) * sk + (n / nb) * sn + (k % kb) * nb + n % nb.
// Plain "ba" rows are kb = nb = 1, sk = 1, sn = K; oneDNN's AVX-512 brgemm wants BA16a64b,
// kb = 16, nb = 64, sk = 1024, sn = roundup(K, 16) * 64.
struct PanelLayout {
  int64_t kb = 1, nb = 1, sk = 1, sn = 1;
  int64_t offset(int64_t k, int64_t n) const { return (k / kb) * sk + (n / nb) * sn + (k % kb) * nb + n % nb; }
};
// Rows [n0, n0 + rows) of W dequantized into a panel with kb == 16 and nb % 16 == 0 (16x16 tiles
// transposed in registers); the padding (k >= cols, n >= rows up to a multiple of nb) is zeroed.
// Bit-identical values to kernels::dequantize_rows.
void dequantize_panel_avx512(const kernels::PackedMatrix& W, int64_t n0, int64_t rows,
                             const PanelLayout& layout, float* out);

}  // namespace detail
}  // namespace ikv::kernels
