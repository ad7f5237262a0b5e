// Building blocks shared by the AVX-512 decoders of packed W3/W4 (packed_matmul_avx512.cc,
// packed_gemv_bf16_avx512.cc): the compile-time block format, per-row group constants and block
// access. Include only from *_avx512.cc files (they are the ones compiled with AVX-512 flags).
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <numeric>
#include <utility>

#include "io/dtype.h"
#include "kernels/packed_matrix.h"

namespace ikv::kernels::detail::avx512 {

using kernels::CodeLayout;
using kernels::CodeWord;
using kernels::PackedMatrix;

// Compile-time view of one bit width's block (see CodeLayout for the runtime one).
template <int B>
struct Format {
  static constexpr int L = 32 / std::gcd(B, 32);  // positions per block
  static constexpr int W = L * B / 32;            // 64-byte words per block
  static constexpr int kBlockCodes = 16 * L;
  static constexpr uint32_t kMask = (1u << B) - 1;
  static constexpr int word(int p) { return p * B / 32; }
  static constexpr int offset(int p) { return p * B % 32; }
  static constexpr bool straddles(int p) { return offset(p) + B > 32; }
  // decode_shifted leaves position p's code at bit shift(p): the float it yields is q·2^shift(p).
  static constexpr int shift(int p) { return straddles(p) ? 0 : offset(p); }
  static constexpr float unshift(int p) { return 1.0f / static_cast<float>(1u << shift(p)); }
  static constexpr std::array<float, L> unshift_table() {
    std::array<float, L> t{};
    for (int p = 0; p < L; ++p) t[p] = unshift(p);
    return t;
  }
};

// Calls f(std::integral_constant<int, P>) for P = 0 .. N-1, unrolled.
template <int N, typename Fn>
[[gnu::always_inline]] inline void for_positions(Fn&& f) {
  [&]<int... P>(std::integer_sequence<int, P...>) __attribute__((always_inline)) {
    (f(std::integral_constant<int, P>{}), ...);
  }(std::make_integer_sequence<int, N>{});
}


// Group constants as fp32: s[i] = scale, sz[i] = scale·zero (exact) of the flat groups
// f0 .. f0 + count - 1 (flat index = row · groups_per_row + group, so a run of whole rows is one
// range).
inline void group_constants(const PackedMatrix& W, int64_t f0, int64_t count, float* s, float* sz) {
  const uint16_t* h = W.scales.data() + f0;
  int64_t i = 0;
  for (; i + 16 <= count; i += 16)
    _mm512_storeu_ps(s + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i))));
  for (; i < count; ++i) s[i] = io::fp16_to_fp32(h[i]);
  auto zero = [&](int64_t f) {
    return W.sym ? 1 << (W.bits - 1) : W.bits > 4 ? W.zeros[f] : (W.zeros[f >> 1] >> (4 * (f & 1))) & 0xF;
  };
  i = 0;
  if (!W.sym && W.bits <= 4) {
    if (f0 % 2 != 0 && count > 0) sz[0] = s[0] * static_cast<float>(zero(f0)), i = 1;  // align to a byte
    // 16 bytes = 32 nibbles: low nibbles are the even groups, high the odd ones; interleave.
    const uint8_t* zb = W.zeros.data() + (f0 + i) / 2;
    const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (; i + 32 <= count; i += 32, zb += 16) {
      const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(zb)));
      const __m512i even = _mm512_and_si512(bytes, _mm512_set1_epi32(0xF));
      const __m512i odd = _mm512_srli_epi32(bytes, 4);
      const __m512 z0 = _mm512_cvtepi32_ps(_mm512_permutex2var_epi32(even, lo_idx, odd));
      const __m512 z1 = _mm512_cvtepi32_ps(_mm512_permutex2var_epi32(even, hi_idx, odd));
      _mm512_storeu_ps(sz + i, _mm512_mul_ps(_mm512_loadu_ps(s + i), z0));
      _mm512_storeu_ps(sz + i + 16, _mm512_mul_ps(_mm512_loadu_ps(s + i + 16), z1));
    }
  }
  for (; i < count; ++i) sz[i] = s[i] * static_cast<float>(zero(f0 + i));
}

// One row's group constants, zero-padded to `stride` entries so flushes past the last group read
// zeros.
inline void row_group_constants(const PackedMatrix& W, int64_t n, float* s, float* sz, int64_t stride) {
  const int64_t groups = W.groups_per_row();
  group_constants(W, n * groups, groups, s, sz);
  std::fill(s + groups, s + stride, 0.0f);
  std::fill(sz + groups, sz + stride, 0.0f);
}

// Positions per group: groups are whole positions (group % 16 == 0) or one per row.
inline int64_t positions_per_group(const PackedMatrix& W) {
  return W.group == W.cols && W.group % 16 != 0 ? std::numeric_limits<int64_t>::max() : W.group / 16;
}

// Block `blk` of row `row` as 64-byte words; the short tail block is copied into `tail` (zeroed
// past its words) so every block decodes the same way without reading past the row.
template <int B>
[[gnu::always_inline]] inline const __m512i* block_words(const CodeWord* row, const CodeLayout& lay, int64_t blk,
                                  CodeWord* tail) {
  const CodeWord* src = row + blk * Format<B>::W;
  if (blk < lay.full_blocks) return reinterpret_cast<const __m512i*>(src);
  // Whole 64-byte words in registers: a memcpy / memset call here would make GCC keep the GEMV's
  // accumulators in memory around it, in the hot loop.
  __m512i* dst = reinterpret_cast<__m512i*>(tail);
#pragma GCC unroll 4
  for (int w = 0; w < Format<B>::W; ++w)
    _mm512_store_si512(dst + w, w < lay.tail_words ? _mm512_loadu_si512(src + w) : _mm512_setzero_si512());
  return dst;
}

inline int64_t total_blocks(const CodeLayout& lay) { return lay.full_blocks + (lay.tail_positions > 0); }

}  // namespace ikv::kernels::detail::avx512
