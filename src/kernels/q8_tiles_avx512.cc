// The q8 GEMV on Q8Tiles (kernels/q8_tiles.h): 16 rows of W per register, vpdpbusd.
//
// Per tile (16 rows) and 128-column unit: 32 quads, each one vpdpbusd per row of x with x's four
// bytes broadcast from memory; W4 decodes a quad with an and (or a shift and an and), W3 with a
// shift, an and and a masked add of its high-bit plane (the mask loaded straight from memory).
// The unit's int32 sums are exact (|Σ| <= 128·15·128 < 2^24, so the conversion to fp32 is too)
// and are folded into the fp32 row totals once per unit:
//   y += s_g ⊙ (A_u · sx_u − z_g · X̂_u),   X̂_u = sx_u · Σ_{k∈u} q_x,k,
// which is q8(X)·W'ᵀ (W' = s·(q − z)) up to fp32 rounding of those terms.
//
// GCC 12's AVX-512 intrinsics initialise their "undefined" operand from itself; see
// packed_matmul_avx512.cc.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/packed_avx512.h"
#include "kernels/q8_tiles.h"

namespace ikv::kernels::detail {
namespace {

using avx512::for_positions;

// Quad Q of a unit as 64 code bytes (row r, column 4Q + j at byte 4r + j).
template <int B>
struct TileQuads;

template <>
struct TileQuads<4> {
  template <int Q>
  [[gnu::always_inline]] static __m512i codes(const __m512i* words) {
    const __m512i w = _mm512_load_si512(words + Q / 2), nibbles = _mm512_set1_epi8(0x0F);
    return Q % 2 == 0 ? _mm512_and_si512(w, nibbles) : _mm512_and_si512(_mm512_srli_epi16(w, 4), nibbles);
  }
};

template <>
struct TileQuads<3> {
  template <int Q>
  [[gnu::always_inline]] static __m512i codes(const __m512i* words) {
    constexpr int s = Q % 4;
    const __m512i w = _mm512_load_si512(words + Q / 4);
    const __m512i low = _mm512_and_si512(s == 0 ? w : _mm512_srli_epi16(w, 2 * s), _mm512_set1_epi8(0x03));
    __mmask64 high;
    std::memcpy(&high, reinterpret_cast<const char*>(words + 8) + 8 * Q, 8);
    return _mm512_mask_add_epi8(low, high, low, _mm512_set1_epi8(0x04));
  }
};

[[gnu::always_inline]] inline __m512i broadcast_dword(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Zero points of a tile's group as floats (row r in lane r): byte r % 8, nibble r / 8.
[[gnu::always_inline]] inline __m512 tile_zeros(const uint8_t* z) {
  long long v;
  std::memcpy(&v, z, 8);
  const __m512i bytes = _mm512_cvtepu8_epi32(_mm_set1_epi64x(v));
  const __m512i shift = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4);
  return _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(bytes, shift), _mm512_set1_epi32(0xF)));
}

// Y[m0 + m, 16t + r] for the MB rows of x from m0 and the tile's rows r. A independent int32 sums
// per row of x keep >= 4 vpdpbusd chains in flight.
template <int B, int MB>
[[gnu::flatten]] void tile_rows(const Q8Tiles& T, const Q8Input& in, int64_t t, int64_t m0, float* Y) {
  constexpr int A = MB == 1 ? 4 : MB <= 3 ? 2 : 1;
  const int64_t units = T.units, groups = T.groups(), uw = T.unit_words();
  const __m512i* words = reinterpret_cast<const __m512i*>(T.codes.data() + t * units * uw);
  __m512 y[MB];
#pragma GCC unroll 4
  for (int m = 0; m < MB; ++m) y[m] = _mm512_setzero_ps();
  for (int64_t u = 0; u < units; ++u, words += uw) {
    // The codes 16 KB on, into L2: for W3 5-15% faster than 0-8 KB or none, for W4 alike (A/B in
    // one process; the row-layout GEMVs halve without it).
    const char* ahead = reinterpret_cast<const char*>(words) + (16 << 10);
    for (int w = 0; w < uw; ++w) _mm_prefetch(ahead + 64 * w, _MM_HINT_T1);
    const int8_t* x = in.x + m0 * in.xstride + u * kQ8Block;
    __m512i acc[MB][A];
#pragma GCC unroll 4
    for (int m = 0; m < MB; ++m)
#pragma GCC unroll 4
      for (int a = 0; a < A; ++a) acc[m][a] = _mm512_setzero_si512();
    for_positions<32>([&](auto qc) __attribute__((always_inline)) {
      constexpr int Q = decltype(qc)::value;
      const __m512i c = TileQuads<B>::template codes<Q>(words);
#pragma GCC unroll 4
      for (int m = 0; m < MB; ++m)
        acc[m][Q % A] = _mm512_dpbusd_epi32(acc[m][Q % A], c, broadcast_dword(x + m * in.xstride + 4 * Q));
    });
    const int64_t f = t * groups + u * kQ8Block / T.group;  // per-channel: every unit lies in group 0
    const __m512 s = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(T.scales.data() + 16 * f)));
    const __m512 z = tile_zeros(T.zeros.data() + 8 * f);
#pragma GCC unroll 4
    for (int m = 0; m < MB; ++m) {
      __m512i sum = acc[m][0];
#pragma GCC unroll 4
      for (int a = 1; a < A; ++a) sum = _mm512_add_epi32(sum, acc[m][a]);
      const int64_t xu = (m0 + m) * units + u;
      const __m512 part = _mm512_fmsub_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(in.sx[xu]),
                                          _mm512_mul_ps(z, _mm512_set1_ps(in.xsum[xu])));
      y[m] = _mm512_fmadd_ps(s, part, y[m]);
    }
  }
  const int64_t n0 = 16 * t;
  const __mmask16 valid = T.rows - n0 >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (T.rows - n0)) - 1);
#pragma GCC unroll 4
  for (int m = 0; m < MB; ++m) _mm512_mask_storeu_ps(Y + (m0 + m) * T.rows + n0, valid, y[m]);
}

template <int B>
void tiles_gemv(const Q8Tiles& T, const Q8Input& in, int64_t M, float* Y) {
  // Guided: long runs of consecutive tiles first (sequential streams the prefetch covers), ever
  // shorter ones at the end, so the two cores finish together even when another process slows
  // one; 2-5% faster than dynamic 512 KB or 128 KB chunks (A/B in one process). The rows of x run
  // 4 at a time over a tile while it is in L1/L2.
#pragma omp parallel for schedule(guided)
  for (int64_t t = 0; t < T.tiles; ++t)
    for (int64_t m0 = 0; m0 < M; m0 += 4) {
      switch (std::min<int64_t>(4, M - m0)) {
        case 1: tile_rows<B, 1>(T, in, t, m0, Y); break;
        case 2: tile_rows<B, 2>(T, in, t, m0, Y); break;
        case 3: tile_rows<B, 3>(T, in, t, m0, Y); break;
        default: tile_rows<B, 4>(T, in, t, m0, Y); break;
      }
    }
}

}  // namespace

void q8_tiles_gemv_avx512(const Q8Tiles& T, const Q8Input& in, int64_t M, float* Y) {
  return T.bits == 3 ? tiles_gemv<3>(T, in, M, Y) : tiles_gemv<4>(T, in, M, Y);
}

}  // namespace ikv::kernels::detail
