// Q8Tiles: a packed W3/W4 matrix re-laid out for the q8 kernel (Y = q8(X)·W'ᵀ on vpdpbusd), the way
// ggml repacks its Q4 blocks for the CPU it runs on.
//
// Why another layout. vpdpbusd adds four byte products into each of 16 int32 lanes. In
// PackedMatrix a register holds one row's codes, so every row needs its own int32 sums, converted
// and scaled at every 128-column unit (the x scale changes there), and a horizontal sum at the
// end: ~8 vector ops per 128 codes. Here a register holds 16 rows × 4 consecutive columns, x comes
// in as one broadcast dword, and the 16 lanes are the 16 rows' sums: one conversion and scaling
// per unit serves 16 rows, and no horizontal sums remain. Measured A/B in one process against
// the row-layout q8 GEMV it replaced: 1.05-1.2x from DRAM at M = 1, ~2x at M = 4 and 16.
//
// Layout. Rows are cut into tiles of 16 (the last one zero-padded), columns into units of
// kQ8Block = 128 (the last one zero-padded); a "quad" q of a unit is its columns 4q .. 4q + 3,
// and byte 4r + j of a quad's 64-byte operand is the code of row r, column 4q + j.
//   codes [tile][unit][words] in 64-byte words:
//     W4: 16 words; word w carries quad 2w in its low nibbles and quad 2w + 1 in its high ones.
//     W3: 12 words, bit planes: words 0..7 the low two bits, quad 4w + s at bits 2s of word w's
//         bytes; words 8..11 the high bits, quad q's 64 as the little-endian uint64 at byte 8q.
//   scales [tile][group][16] fp16, the PackedMatrix's values (unit u lies in group u·128/group);
//   zeros  [tile][group][8] nibbles: row r's zero point (2^(bits-1) if symmetric) in byte r % 8,
//          low nibble for r < 8.
// Dense: 3 or 4 bits per code and 2.5 bytes of constants per group and row, as in PackedMatrix.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/packed_matmul.h"
#include "kernels/packed_matrix.h"

namespace ikv::kernels {

struct Q8Tiles {
  int bits = 4;
  int64_t rows = 0, cols = 0;        // N, K of the source matrix
  int64_t group = 0;                 // columns per group (== cols for per-channel)
  int64_t tiles = 0, units = 0;      // ceil(N / 16), ceil(K / 128)
  bool sym = false;                  // the source's: symmetric codes (zeros hold 2^(bits-1))
  std::vector<kernels::CodeWord> codes;  // tiles * units * unit_words()
  std::vector<uint16_t> scales;        // tiles * groups * 16
  std::vector<uint8_t> zeros;          // tiles * groups * 8

  int64_t groups() const { return cols / group; }
  int unit_words() const { return bits == 4 ? 16 : 12; }
};

// True when W can be tiled: bits 3 or 4, groups of 128k columns or per-channel scales.
bool q8_tiles_cover(const kernels::PackedMatrix& W);
// W's codes and constants in the tiled layout (same values; W is not needed afterwards by the
// GEMV). Throws ikv::Error unless q8_tiles_cover(W).
Q8Tiles tile_for_q8(const kernels::PackedMatrix& W);
// Code of row n, column k (reference decoder of the layout, for tests).
int q8_tile_code(const Q8Tiles& T, int64_t n, int64_t k);
// The PackedMatrix T was tiled from, byte for byte: under dtype q8 the tiles are the only copy of
// the codes (kernels::Packed), and this rebuilds the row layout where one is needed (dequantizing,
// saving an artifact, the int8 copy).
kernels::PackedMatrix untile_q8(const Q8Tiles& T);
// Bytes the GEMV streams: codes + scales + zeros.
size_t q8_tiles_bytes(const Q8Tiles& T);
// True when this CPU runs q8_tiles_matmul (AVX-512 with VNNI).
bool q8_tiles_runs_here();
// Y[M, rows] = q8(X[M, cols])·W'ᵀ (quantize_q8's rounding of X, W' exactly dequantized), OpenMP over
// tiles of W, 4 rows of X at a time over each tile while it sits in L1/L2. Any M: at M = 512 it
// runs ~3x oneDNN's fp32 GEMM (bench/bench_kernels.cc). Requires q8_tiles_runs_here().
void q8_tiles_matmul(const Q8Tiles& T, const float* X, int64_t M, float* Y);

namespace detail {

// X as the tiled GEMV reads it, M rows: x = quantize_q8's codes ([M][units · kQ8Block], zero past
// cols), sx its block scales and xsum = sx · Σ codes of each block ([M][units] both).
struct Q8Input {
  const int8_t* x;
  int64_t xstride;
  const float* sx;
  const float* xsum;
};
void q8_tiles_gemv_avx512(const Q8Tiles& T, const Q8Input& in, int64_t M, float* Y);

}  // namespace detail

}  // namespace ikv::kernels
