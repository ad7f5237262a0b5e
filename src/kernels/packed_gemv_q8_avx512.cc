// Packed W3/W4 GEMV (M < kPanelMinRows) with q8 activations: Y = q8(X)·Wᵀ on vpdpbusd (VNNI).
//
// Why: vpdpbusd multiplies 64 unsigned bytes by 64 signed bytes and adds each four products into
// an int32 lane: 64 multiply-adds per op (vdpbf16ps: 32, fp32 FMA: 16), and a code becomes an
// operand with one or two integer ops per 64 (W4: an and, or a shift and an and; W3: a
// vpmultishiftqb and an and): per core from cache W4 decodes ~1.4x as fast as with bf16 x, the
// way llama.cpp pairs its Q4 weights with Q8 activations.
//
// Numerics. X is quantized in blocks of kQ8Block = 128 columns (quantize_q8: q = round(x / s),
// s = max|x| / 127 per block), and W keeps its exact codes. Each 128-column unit's sum
// A_u = Σ q_w·q_x is exact in int32 and converts exactly to fp32 (|A_u| <= 128·15·128 < 2^24);
// per unit the driver adds (s_g·s_u)·A_u in fp32 and at the end subtracts Σ_g s_g z_g X̂_g
// (X̂_g = Σ q_x s_u over the group), so Y is q8(X)·W' with W' the exactly dequantized weight, up
// to fp32 rounding of those few terms.
//
// Layout. vpdpbusd pairs byte j of each dword lane of the codes with byte j of x's, so a dword
// lane carries one lane i of four positions p_0..p_3 (columns 16p + i) and x is laid out to
// match. All four positions lie in one 128-column unit: W4 takes positions (h, h + 2, h + 4,
// h + 6) of its block (the low or high nibble of each byte), W3 four consecutive ones
// (4h .. 4h + 3 of an eight-position run, one dword of its 96-bit lane string).
//
// GCC 12's AVX-512 intrinsics initialise their "undefined" operand from itself; see
// packed_matmul_avx512.cc.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu.h"
#include "kernels/packed_avx512.h"
#include "kernels/packed_gemv_avx512.h"
#include "kernels/packed_matmul.h"

namespace ikv::kernels::detail {
namespace {

using avx512::CodeLayout;
using avx512::Format;
using avx512::PackedMatrix;
using avx512::total_blocks;

// Step t of a block: the codes of four positions per dword lane as bytes, and pos(t, j), the
// position byte j carries. kUnitSteps steps make one 128-column unit.
template <int B>
struct Quads;

// W4: one word per block (one unit); position p sits at bits 4p of each dword. Step 0 keeps the
// low nibble of every byte (positions 0, 2, 4, 6), step 1 the high one (1, 3, 5, 7).
template <>
struct Quads<4> {
  static constexpr int kSteps = 2;
  static constexpr int pos(int t, int j) { return 2 * j + t; }
  template <int T>
  [[gnu::always_inline]] static __m512i codes(const __m512i* words) {
    const __m512i w = _mm512_load_si512(words);
    const __m512i nibbles = _mm512_set1_epi8(0x0F);
    return T == 0 ? _mm512_and_si512(w, nibbles) : _mm512_and_si512(_mm512_srli_epi16(w, 4), nibbles);
  }
};

// W3: three words per block, four units of eight positions; position p sits at bit 3p of a lane's
// 96-bit string. Run j's 24 bits are one dword: word 0 (j = 0), bits 8.. of word 2 (j = 3), or
// funnelled from two words (bits 24.. for j = 1, bits 48.. for j = 2). vpmultishiftqb copies
// into byte i of each dword the byte starting at position 4h + i's bit; an and keeps its 3 bits.
template <>
struct Quads<3> {
  static constexpr int kSteps = 8;
  static constexpr int pos(int t, int j) { return 4 * t + j; }
  static constexpr uint64_t control(int t) {
    const int first = t / 2 == 3 ? 8 : 0;  // bit of the run's first position in the dword read
    uint64_t dword = 0;
    for (int i = 0; i < 4; ++i) dword |= static_cast<uint64_t>(first + 3 * (4 * (t % 2) + i)) << (8 * i);
    return dword | (dword + 0x20202020u) << 32;
  }
  template <int T>
  [[gnu::always_inline]] static __m512i codes(const __m512i* words) {
    constexpr int j = T / 2;
    __m512i src;
    if constexpr (j == 1) {
      src = _mm512_shrdi_epi32(_mm512_load_si512(words), _mm512_load_si512(words + 1), 24);
    } else if constexpr (j == 2) {
      src = _mm512_shrdi_epi32(_mm512_load_si512(words + 1), _mm512_load_si512(words + 2), 16);
    } else {
      src = _mm512_load_si512(words + 2 * (j / 3));
    }
    const __m512i bytes = _mm512_multishift_epi64_epi8(_mm512_set1_epi64(static_cast<long long>(control(T))), src);
    return _mm512_and_si512(bytes, _mm512_set1_epi8(0x07));
  }
};

// One quad of positions per step: 64 codes times 64 int8 x in one vpdpbusd, summed in int32.
template <int B>
struct Q8Steps {
  using X = int8_t;
  static constexpr int kBits = B, kSteps = Quads<B>::kSteps, kCodesPerStep = 64, kFlushCodes = int{kQ8Block};
  static constexpr int kUnitSteps = kFlushCodes / kCodesPerStep;  // a unit is 8 positions of 16 codes
  static_assert(Format<B>::kBlockCodes % kFlushCodes == 0 && kFlushCodes % kCodesPerStep == 0);
  // Every step's four positions lie in its unit, at the same offsets in every unit (q8_gemv lays
  // out x once per unit with them).
  static constexpr bool units_alike() {
    for (int t = 0; t < kSteps; ++t)
      for (int j = 0; j < 4; ++j) {
        const int local = Quads<B>::pos(t % kUnitSteps, j);
        if (local >= 8 || Quads<B>::pos(t, j) != 8 * (t / kUnitSteps) + local) return false;
      }
    return true;
  }
  static_assert(units_alike());
  [[gnu::always_inline]] static __m512 partial(__m512 acc) { return _mm512_cvtepi32_ps(_mm512_castps_si512(acc)); }
  template <int T, int R, int MB>
  [[gnu::always_inline]] static void step(const __m512i* const (&words)[R], const int8_t* xb, int64_t xstride,
                                          __m512 (&acc)[R][MB]) {
    __m512i c[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) c[r] = Quads<B>::template codes<T>(words[r]);
#pragma GCC unroll 16
    for (int m = 0; m < MB; ++m) {
      const __m512i x = _mm512_loadu_si512(xb + m * xstride + 64 * T);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
        acc[r][m] = _mm512_castsi512_ps(_mm512_dpbusd_epi32(_mm512_castps_si512(acc[r][m]), c[r], x));
    }
  }
};

template <int B>
void q8_gemv(const PackedMatrix& W, const float* X, int64_t M, float* Y) {
  using F = Format<B>;
  using Q = Quads<B>;
  constexpr int kUnitSteps = Q8Steps<B>::kUnitSteps;
  const CodeLayout lay = quant::code_layout(B, W.cols);
  const int64_t padded = total_blocks(lay) * F::kBlockCodes, units = padded / kQ8Block;
  const int64_t groups = W.groups_per_row();
  std::vector<int8_t> q(M * padded, 0), xp(M * padded);
  std::vector<float> xs(M * units, 0.0f), xg(M * groups, 0.0f);
  const int64_t blocks = (W.cols + kQ8Block - 1) / kQ8Block;  // <= units: W3 blocks pad to 512
  for (int64_t m = 0; m < M; ++m)
    quantize_q8(X + m * W.cols, 1, W.cols, q.data() + m * padded, xs.data() + m * units);
  // Step h of a unit: byte 4i + j of its 64 is x at column 16·pos(h, j) + i of the unit (W3's
  // later runs sit at the same offsets within their units), one two-register byte permute.
  __m512i idx[kUnitSteps];
  for (int h = 0; h < kUnitSteps; ++h) {
    alignas(64) int8_t bytes[64];
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 4; ++j) bytes[4 * i + j] = static_cast<int8_t>(16 * Q::pos(h, j) + i);
    idx[h] = _mm512_load_si512(bytes);
  }
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t u = 0; u < units; ++u) {
      const int8_t* src = q.data() + m * padded + u * kQ8Block;
      const __m512i lo = _mm512_loadu_si512(src), hi = _mm512_loadu_si512(src + 64);
      for (int h = 0; h < kUnitSteps; ++h)
        _mm512_storeu_si512(xp.data() + m * padded + u * kQ8Block + 64 * h, _mm512_permutex2var_epi8(lo, idx[h], hi));
    }
    // X̂_g, the zero-point term's group sums: every unit lies in one group (covers() asks for it).
    for (int64_t u = 0; u < blocks; ++u) {
      int32_t sum = 0;
      for (int64_t k = 0; k < kQ8Block; ++k) sum += q[m * padded + u * kQ8Block + k];
      xg[m * groups + std::min(groups - 1, u * kQ8Block / W.group)] += static_cast<float>(sum) * xs[m * units + u];
    }
  }
  avx512::GemvInput in{xp.data(), padded, xg.data()};
  in.xscale = xs.data();
  avx512::gemv<Q8Steps<B>>(W, lay, in, M, Y);
}

}  // namespace

bool avx512_q8_gemv_covers(const PackedMatrix& W) {
  if (!cpu_has_avx512_vnni() || !cpu_has_avx512_vbmi()) return false;
  return (W.bits == 3 || W.bits == 4) && (W.group == W.cols || W.group % kQ8Block == 0);
}

void packed_gemv_q8_avx512(const PackedMatrix& W, const float* X, int64_t M, float* Y) {
  return W.bits == 3 ? q8_gemv<3>(W, X, M, Y) : q8_gemv<4>(W, X, M, Y);
}

}  // namespace ikv::kernels::detail
