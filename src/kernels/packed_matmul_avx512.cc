// AVX-512 decoders for packed W3/W4 (layout: kernels/packed_matrix.h). One aligned 64-byte load gives
// a dword of all 16 lanes; position p of the block is a mask (or, where the field straddles two
// dwords, a funnel of two shifts) away, and vcvtudq2ps turns it into floats.
//
// The GEMV keeps a non-straddling code where it sits, at bit offset o: the float is q·2^o, exact
// since q has at most 8 significant bits, and x is pre-scaled by 2^-o once per call, so each
// 16 weights cost and + cvt + fma. The product (q·2^o)(x·2^-o) equals q·x bit for bit (scaling by
// a power of two commutes with rounding; only |x| < 2^-97 would lose bits to subnormals).
// Scale and zero point are applied per group:  y = Σ_g s_g·(Σ_{k∈g} q_k x_k) − Σ_g s_g z_g Σ_{k∈g} x_k.
//
// Where a dequantized weight is needed (small-M GEMM, panels for the large-M GEMM) it is
// fmsub(q·2^o, s·2^-o, z·s) = (q − z)·s with one rounding, and q·s and z·s are exact in fp32
// (8-bit integer times an fp16 scale), so it is bit-identical to kernels::dequantize_rows.

// GCC 12's AVX-512 intrinsics initialise their "undefined" operand from itself (_mm512_undefined_ps),
// which -W(maybe-)uninitialized reports at every inlined use; the warning says nothing about this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/packed_avx512.h"
#include "kernels/packed_gemv_avx512.h"
#include "kernels/packed_matmul.h"

namespace ikv::kernels::detail {
namespace {

using avx512::block_words;
using avx512::CodeLayout;
using avx512::CodeWord;
using avx512::for_positions;
using avx512::Format;
using avx512::PackedMatrix;
using avx512::positions_per_group;
using avx512::row_group_constants;
using avx512::total_blocks;

// q·2^shift(P) for the 16 lanes of position P, as floats. The words are read from memory (L1) at
// each use rather than held in registers: W3's three words per row would otherwise spill.
template <int B, int P>
[[gnu::always_inline]] inline __m512 decode_shifted(const __m512i* words) {
  using F = Format<B>;
  constexpr int d = F::word(P), o = F::offset(P);
  if constexpr (F::straddles(P)) {
    const __m512i lo = _mm512_srli_epi32(_mm512_load_si512(words + d), o);
    const __m512i hi = _mm512_slli_epi32(_mm512_load_si512(words + d + 1), 32 - o);
    // (lo | hi) & mask in one vpternlogd.
    return _mm512_cvtepu32_ps(_mm512_ternarylogic_epi32(lo, hi, _mm512_set1_epi32(F::kMask), 0xA8));
  } else {
    // The mask is a plain load: left to itself GCC rebuilds the constant with mov + vpbroadcastd
    // (an extra vector-pipe op) at every position, as W3's 30 masks do not fit in registers.
    __m512i mask = _mm512_set1_epi32(F::kMask << o);
    asm("" : "+v"(mask));
    return _mm512_cvtepu32_ps(_mm512_and_si512(_mm512_load_si512(words + d), mask));
  }
}

// ---- M <= 4: fold scale and zero point out of the inner loop (packed_gemv_avx512.h) -----------

// One position per step: q·2^o (the code where it sits, as a float) times x·2^-o, one FMA per 16
// weights.
template <int B>
struct Fp32Steps {
  using X = float;
  static constexpr int kBits = B, kSteps = Format<B>::L, kCodesPerStep = 16;
  template <int T, int R, int MB>
  [[gnu::always_inline]] static void step(const __m512i* const (&words)[R], const float* xb, int64_t xstride,
                                          __m512 (&acc)[R][MB]) {
    __m512 q[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) q[r] = decode_shifted<B, T>(words[r]);
#pragma GCC unroll 16
    for (int m = 0; m < MB; ++m) {
      const __m512 x = _mm512_loadu_ps(xb + m * xstride + 16 * T);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[r][m] = _mm512_fmadd_ps(q[r], x, acc[r][m]);
    }
  }
};

template <int B>
void folded_gemm(const PackedMatrix& W, const float* X, int64_t M, float* Y) {
  using F = Format<B>;
  const CodeLayout lay = kernels::code_layout(B, W.cols);
  const int64_t groups = W.groups_per_row(), xstride = total_blocks(lay) * F::kBlockCodes;
  std::vector<float> xs(M * xstride, 0.0f), xg(M * groups, 0.0f);
  for (int64_t m = 0; m < M; ++m) {
    const float* x = X + m * W.cols;
    // x pre-scaled position by position, and the group sums (only the zero-point term uses
    // them, so the order of the additions is free).
    for (int64_t k0 = 0; k0 < W.cols; k0 += 16) {
      const float f = F::unshift_table()[(k0 % F::kBlockCodes) / 16];
      const int64_t count = std::min<int64_t>(16, W.cols - k0);
      for (int64_t i = 0; i < count; ++i) xs[m * xstride + k0 + i] = x[k0 + i] * f;
    }
    for (int64_t g = 0; g < groups; ++g) {
      const float* xgrp = x + g * W.group;
      float sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t k = 0; k < W.group; ++k) sum += xgrp[k];
      xg[m * groups + g] = sum;
    }
  }
  const avx512::GemvInput in{xs.data(), xstride, xg.data()};
  avx512::gemv<Fp32Steps<B>>(W, lay, in, M, Y);
}

// ---- kFoldedMaxM < M < kPanelMinRows: dequantize in registers, use each weight for 8 rows of X --

// Y[m0 + m, n0 + r] for r < R, m < MB (xp: rows of X zero-padded to whole blocks).
template <int B, int R, int MB>
void dequant_tile(const PackedMatrix& W, const CodeLayout& lay, const float* xp, int64_t xstride,
                  int64_t m0, int64_t n0, float* Y, float* scratch, int64_t gstride) {
  using F = Format<B>;
  const int64_t blocks = total_blocks(lay), ppg = positions_per_group(W);
  float* s = scratch;
  float* sz = scratch + R * gstride;
  const CodeWord* rows[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    row_group_constants(W, n0 + r, s + r * gstride, sz + r * gstride, gstride);
    rows[r] = W.codes.data() + (n0 + r) * lay.row_words;
  }
  CodeWord tail[R][F::W];
  __m512 acc[R][MB];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int m = 0; m < MB; ++m) acc[r][m] = _mm512_setzero_ps();
  __m512 scale[R], scale_zero[R];  // the current group's s and s·z, broadcast
  int64_t left = ppg, g = 0;
  auto load_group = [&] {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      scale[r] = _mm512_set1_ps(s[r * gstride + g]);
      scale_zero[r] = _mm512_set1_ps(sz[r * gstride + g]);
    }
  };
  load_group();
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const __m512i* words[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) words[r] = block_words<B>(rows[r], lay, blk, tail[r]);
    const float* xb = xp + m0 * xstride + blk * F::kBlockCodes;
    for_positions<F::L>([&](auto pc) {
      constexpr int P = decltype(pc)::value;
      __m512 w[R];
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
        w[r] = _mm512_fmsub_ps(decode_shifted<B, P>(words[r]),
                               _mm512_mul_ps(scale[r], _mm512_set1_ps(F::unshift(P))), scale_zero[r]);
#pragma GCC unroll 16
      for (int m = 0; m < MB; ++m) {
        const __m512 x = _mm512_loadu_ps(xb + m * xstride + 16 * P);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) acc[r][m] = _mm512_fmadd_ps(w[r], x, acc[r][m]);
      }
      if (--left == 0) {
        left = ppg;
        ++g;
        load_group();
      }
    });
  }
#pragma GCC unroll 16
  for (int m = 0; m < MB; ++m)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) Y[(m0 + m) * W.rows + n0 + r] = _mm512_reduce_add_ps(acc[r][m]);
}

// All M rows of X against rows [n0, n0 + R): tiles of 8, 4, 2, 1 rows of X; the R rows' codes
// stay in L1 from one tile to the next.
template <int B, int R>
void dequant_rows(const PackedMatrix& W, const CodeLayout& lay, const float* xp, int64_t xstride,
                  int64_t M, int64_t n0, float* Y, float* scratch, int64_t gstride) {
  int64_t m0 = 0;
  for (; m0 + 8 <= M; m0 += 8) dequant_tile<B, R, 8>(W, lay, xp, xstride, m0, n0, Y, scratch, gstride);
  if (M - m0 >= 4) dequant_tile<B, R, 4>(W, lay, xp, xstride, m0, n0, Y, scratch, gstride), m0 += 4;
  if (M - m0 >= 2) dequant_tile<B, R, 2>(W, lay, xp, xstride, m0, n0, Y, scratch, gstride), m0 += 2;
  if (M - m0 >= 1) dequant_tile<B, R, 1>(W, lay, xp, xstride, m0, n0, Y, scratch, gstride);
}

template <int B>
void dequant_gemm(const PackedMatrix& W, const float* X, int64_t M, float* Y) {
  using F = Format<B>;
  constexpr int R = 2;
  const CodeLayout lay = kernels::code_layout(B, W.cols);
  const int64_t xstride = total_blocks(lay) * F::kBlockCodes;
  std::vector<float> xp(M * xstride, 0.0f);
  for (int64_t m = 0; m < M; ++m) std::copy_n(X + m * W.cols, W.cols, xp.data() + m * xstride);
  const int64_t gstride = (W.groups_per_row() + F::L + 1 + 15) / 16 * 16;
  const int64_t chunk = 16, chunks = (W.rows + chunk - 1) / chunk;
#pragma omp parallel
  {
    std::vector<float> scratch(2 * R * gstride);
#pragma omp for schedule(dynamic) nowait
    for (int64_t i = 0; i < chunks; ++i) {
      const int64_t begin = i * chunk, end = std::min(W.rows, begin + chunk);
      int64_t n = begin;
      for (; n + R <= end; n += R) dequant_rows<B, R>(W, lay, xp.data(), xstride, M, n, Y, scratch.data(), gstride);
      for (; n < end; ++n) dequant_rows<B, 1>(W, lay, xp.data(), xstride, M, n, Y, scratch.data(), gstride);
    }
  }
}

// ---- panels for the large-M GEMM ---------------------------------------------------------------

template <int B>
void dequantize_rows(const PackedMatrix& W, int64_t n0, int64_t n1, float* out, int64_t ld) {
  using F = Format<B>;
  const CodeLayout lay = kernels::code_layout(B, W.cols);
  const int64_t blocks = total_blocks(lay), ppg = positions_per_group(W);
  const int64_t gstride = (W.groups_per_row() + F::L + 1 + 15) / 16 * 16;
  std::vector<float> s(gstride), sz(gstride);
  CodeWord tail[F::W];
  for (int64_t n = n0; n < n1; ++n) {
    row_group_constants(W, n, s.data(), sz.data(), gstride);
    const CodeWord* row = W.codes.data() + n * lay.row_words;
    float* o = out + (n - n0) * ld;
    int64_t left = ppg, g = 0;
    __m512 sv = _mm512_set1_ps(s[0]), szv = _mm512_set1_ps(sz[0]);
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const __m512i* words = block_words<B>(row, lay, blk, tail);
      for_positions<F::L>([&](auto pc) {
        constexpr int P = decltype(pc)::value;
        const int64_t k = blk * F::kBlockCodes + 16 * P;
        if (k < W.cols) {
          const __m512 w = _mm512_fmsub_ps(decode_shifted<B, P>(words),
                                           _mm512_mul_ps(sv, _mm512_set1_ps(F::unshift(P))), szv);
          if (k + 16 <= W.cols) _mm512_storeu_ps(o + k, w);
          else _mm512_mask_storeu_ps(o + k, static_cast<__mmask16>((1u << (W.cols - k)) - 1), w);
        }
        if (--left == 0) {
          left = ppg;
          ++g;
          sv = _mm512_set1_ps(s[g]);
          szv = _mm512_set1_ps(sz[g]);
        }
      });
    }
  }
}

// q as a plain integer (no shift left in): the panel writer has no pre-scaled x to absorb it.
template <int B, int P>
inline __m512 decode(const __m512i* words) {
  using F = Format<B>;
  constexpr int d = F::word(P), o = F::offset(P);
  const __m512i mask = _mm512_set1_epi32(F::kMask);
  if constexpr (F::straddles(P)) {
    const __m512i lo = _mm512_srli_epi32(_mm512_load_si512(words + d), o);
    const __m512i hi = _mm512_slli_epi32(_mm512_load_si512(words + d + 1), 32 - o);
    return _mm512_cvtepu32_ps(_mm512_ternarylogic_epi32(lo, hi, mask, 0xA8));
  } else if constexpr (o == 0) {
    return _mm512_cvtepu32_ps(_mm512_and_si512(_mm512_load_si512(words + d), mask));
  } else {
    return _mm512_cvtepu32_ps(_mm512_and_si512(_mm512_srli_epi32(_mm512_load_si512(words + d), o), mask));
  }
}

// In place: r[i][j] -> r[j][i]. Pairs, then quads within 128-bit lanes, then the 4x4 of lanes.
inline void transpose16x16(__m512 (&r)[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);      // rows i, i+1: columns 0,1 of each lane
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);  //              columns 2,3
  }
  for (int i = 0; i < 16; i += 4) {  // u[i + c], lane L: column 4L + c of rows i..i+3
    u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {  // gather lane L of u[c], u[4+c], u[8+c], u[12+c] into row 4L + c
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);       // lanes 0, 2
    const __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);       // lanes 1, 3
    const __m512 w0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
    r[c] = _mm512_shuffle_f32x4(v0, w0, 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
    r[4 + c] = _mm512_shuffle_f32x4(v1, w1, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
  }
}

// 16 rows at a time: decode one position of each (16 k values), transpose, and store the 16
// vectors of 16 n values where the blocked layout puts (k, n..n+15).
template <int B>
void dequantize_panel(const PackedMatrix& W, int64_t n0, int64_t rows, const PanelLayout& pl, float* out) {
  using F = Format<B>;
  const CodeLayout lay = kernels::code_layout(B, W.cols);
  const int64_t blocks = total_blocks(lay), ppg = positions_per_group(W);
  const int64_t gstride = (W.groups_per_row() + F::L + 1 + 15) / 16 * 16;
  const int64_t padded_rows = (rows + pl.nb - 1) / pl.nb * pl.nb;
  const int64_t k_positions = (W.cols + 15) / 16;
  const __mmask16 last_mask = W.cols % 16 ? static_cast<__mmask16>((1u << (W.cols % 16)) - 1) : 0xFFFF;
  std::vector<float> s(16 * gstride), sz(16 * gstride);
  CodeWord tail[16][F::W];
  for (int64_t r0 = 0; r0 < padded_rows; r0 += 16) {
    const int live = static_cast<int>(std::clamp<int64_t>(rows - r0, 0, 16));
    const CodeWord* rowp[16];
    for (int r = 0; r < live; ++r) {
      row_group_constants(W, n0 + r0 + r, s.data() + r * gstride, sz.data() + r * gstride, gstride);
      rowp[r] = W.codes.data() + (n0 + r0 + r) * lay.row_words;
    }
    float* tile_base = out + (r0 / pl.nb) * pl.sn + r0 % pl.nb;
    int64_t left = ppg, g = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const __m512i* words[16];
      for (int r = 0; r < live; ++r) words[r] = block_words<B>(rowp[r], lay, blk, tail[r]);
      for_positions<F::L>([&](auto pc) {
        constexpr int P = decltype(pc)::value;
        const int64_t pos = blk * F::L + P;
        if (pos < k_positions) {
          __m512 v[16];
          for (int r = 0; r < 16; ++r) {
            if (r < live) {
              v[r] = _mm512_fmsub_ps(decode<B, P>(words[r]), _mm512_set1_ps(s[r * gstride + g]),
                                     _mm512_set1_ps(sz[r * gstride + g]));
              if (pos == k_positions - 1) v[r] = _mm512_maskz_mov_ps(last_mask, v[r]);  // k >= cols
            } else {
              v[r] = _mm512_setzero_ps();  // n >= rows: oneDNN's padding
            }
          }
          transpose16x16(v);
          float* dst = tile_base + pos * pl.sk;  // 16 k of this position form one K block
          for (int j = 0; j < 16; ++j) _mm512_store_ps(dst + j * pl.nb, v[j]);
        }
        if (--left == 0) {
          left = ppg;
          ++g;
        }
      });
    }
  }
}

}  // namespace

bool avx512_decodes(const PackedMatrix& W) {
  return (W.bits == 3 || W.bits == 4) && (W.group % 16 == 0 || W.group == W.cols);
}

void packed_gemv_avx512(const PackedMatrix& W, const float* X, int64_t M, float* Y) {
  if (M <= kFoldedMaxM) return W.bits == 3 ? folded_gemm<3>(W, X, M, Y) : folded_gemm<4>(W, X, M, Y);
  return W.bits == 3 ? dequant_gemm<3>(W, X, M, Y) : dequant_gemm<4>(W, X, M, Y);
}

void dequantize_rows_avx512(const PackedMatrix& W, int64_t n0, int64_t n1, float* out, int64_t ld) {
  return W.bits == 3 ? dequantize_rows<3>(W, n0, n1, out, ld) : dequantize_rows<4>(W, n0, n1, out, ld);
}

void dequantize_panel_avx512(const PackedMatrix& W, int64_t n0, int64_t rows, const PanelLayout& layout,
                             float* out) {
  return W.bits == 3 ? dequantize_panel<3>(W, n0, rows, layout, out)
                     : dequantize_panel<4>(W, n0, rows, layout, out);
}

}  // namespace ikv::kernels::detail
