// Packed W3/W4 GEMV (M < kPanelMinRows) with bf16 activations: Y = bf16(X)·Wᵀ on vdpbf16ps.
//
// Why: the exact fp32 decode (and + convert + FMA per 16 weights) costs three vector ops per 16
// weights, which on two cores falls short of streaming the packed weights at DRAM speed. Here 32
// codes become bf16 operands in one or two integer ops (W4: a 16-bit shift and a vpternlogd; W3:
// a vpternlogd, and per four pairs one vpmultishiftqb and one shift) and one vdpbf16ps does their
// 32 multiply-adds: half the vector ops per weight.
//
// Numerics. X is rounded to bf16 once (round to nearest even, as oneDNN's bf16 matmul and torch's
// .bfloat16() do). A code q becomes the bf16 a = 1 + q/c (exponent 0, q where it already sits in
// the 7-bit mantissa, so c = 2^(7 - its lowest bit) is a power of two fixed per position: W4 16,
// or 128 where a nibble needs no shift; W3 8 or 64): exact, and so is every product a·x̂ (8 × 8
// significant bits). vdpbf16ps sums them in fp32. x̂ is stored times c (exact), so per group
// A_g = Σ a·c·x̂ = Σ (q + c)·x̂ and
//   y = Σ_g s_g A_g − Σ_g s_g z_g X̂_g − Σ_g s_g X^c_g,   X̂_g = Σ x̂, X^c_g = Σ c·x̂ over the group.
// The result is bf16(X)·W' with W' the exactly dequantized weight and fp32 accumulation; the base
// c adds to every code in the size of the partial sums (and so of their rounding errors), which
// the tests' tolerance (tests/kernels/test_packed_matmul.cc, via bf16_gemv_code_base) accounts for.
//
// A vdpbf16ps lane adds the products of its low and high 16-bit halves, so the two codes it pairs
// must share a group: W4 pairs positions (t, t + 4) (a dword holds positions 0..3 in its low half
// and 4..7 in its high half), so its groups must span 8 positions (group % 128 == 0); W3 pairs
// (p, p + 2) within four positions (group % 64 == 0). Per-channel scales always work.
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
using avx512::for_positions;
using avx512::total_blocks;

constexpr int kOneBf16 = 0x3F80;  // bf16 1.0

// (v & mask) | 1.0 in every 16-bit half: the bf16 1 + q/c once q sits under `mask` (c = 128 >> its
// lowest bit).
[[gnu::always_inline]] inline __m512i with_exponent(__m512i v, int mask) {
  return _mm512_ternarylogic_epi32(v, _mm512_set1_epi16(static_cast<int16_t>(mask)),
                                   _mm512_set1_epi16(kOneBf16), 0xEA);
}

// Pair t of a block: which two positions it carries (lo in each dword's low half), the group sizes
// that keep both in one group (multiples of kGroupCodes), the base c of each position (its code
// decodes to the bf16 1 + q/c, so x̂ is stored times c), and the pair's codes as 32 bf16 values.
template <int B>
struct Pairs;

// W4: one word per block; position p sits at bits 4p of each dword. Pair t = positions (t, t + 4),
// nibble t of both halves: nibble 0 is read where it sits, bits 0..3 (1 + q/128); a 16-bit shift
// moves nibbles 1..3 to bits 3..6 (1 + q/16). Skipping one shift in four measured 4% faster.
template <>
struct Pairs<4> {
  static constexpr int kCount = 4, kGroupCodes = 128;  // positions t, t + 4: 8 positions of 16
  static constexpr int lo(int t) { return t; }
  static constexpr int hi(int t) { return t + 4; }
  static constexpr int base(int p) { return p % 4 == 0 ? 128 : 16; }
  template <int T>
  [[gnu::always_inline]] static __m512i codes(const __m512i* words) {
    const __m512i w = _mm512_load_si512(words);
    return T == 0 ? with_exponent(w, 0x000F) : with_exponent(_mm512_srli_epi16(w, 4 * T - 3), 0x0078);
  }
};

// W3: three words per block; position p sits at bit 3p of a lane's 96-bit string (word 3p / 32).
// Positions 8j .. 8j + 7 (pairs 4j .. 4j + 3) lie in one dword: word 0 (j = 0), word 2 (j = 3), or
// one funnelled from two words (bits 24.. for j = 1, bits 48.. for j = 2, as positions 10 and 21
// straddle words). One vpmultishiftqb copies into each byte of a dword the byte starting one bit
// below an even position 8j + 2i, so it holds that code at bits 1..3 and the next one at bits 4..6:
// bytes 0 and 2 (the dword's two low bytes) take positions 8j, 8j + 2, bytes 1 and 3 take
// 8j + 4, 8j + 6 and are brought down by a 16-bit shift. A vpternlogd then keeps bits 1..3
// (pairs (8j, 8j + 2) and (8j + 4, 8j + 6): 1 + q/64) or bits 4..6 (pairs (8j + 1, 8j + 3) and
// (8j + 5, 8j + 7): 1 + q/8).
// Per 128 codes: one multishift, one shift, four vpternlogd. vpmultishiftqb shares an execution
// pipe with vdpbf16ps on Zen 4, so fewer multishifts per weight is what lets W3 keep up with DRAM.
template <>
struct Pairs<3> {
  static constexpr int kCount = 16, kGroupCodes = 64;  // pairs within 4 positions of 16
  static constexpr int lo(int t) { return 8 * (t / 4) + 4 * (t % 4 / 2) + t % 2; }
  static constexpr int hi(int t) { return lo(t) + 2; }
  static constexpr int base(int p) { return p % 2 == 0 ? 64 : 8; }
  static constexpr uint64_t control(int j) {
    const int first = j == 3 ? 8 : 0;  // bit of position 8j in the dword read
    auto field = [&](int p) { return static_cast<uint64_t>(first + 3 * p - 1) & 63; };
    // Bytes 0..3 of a dword: windows at positions 0, 4, 2, 6 (relative to 8j).
    const uint64_t dword = field(0) | field(4) << 8 | field(2) << 16 | field(6) << 24;
    return dword | ((dword + 0x20202020u) << 32 & 0x3F3F3F3F00000000ull);
  }
  template <int T>
  [[gnu::always_inline]] static __m512i codes(const __m512i* words) {
    constexpr int j = T / 4;
    __m512i src;
    if constexpr (j == 1) {  // bits 24.. of word 0 then word 1
      src = _mm512_shrdi_epi32(_mm512_load_si512(words), _mm512_load_si512(words + 1), 24);
    } else if constexpr (j == 2) {  // bits 16.. of word 1 then word 2
      src = _mm512_shrdi_epi32(_mm512_load_si512(words + 1), _mm512_load_si512(words + 2), 16);
    } else {
      src = _mm512_load_si512(words + 2 * (j / 3));
    }
    // The same multishift (and shift) for T = 4j .. 4j + 3: GCC computes them once.
    const __m512i bytes = _mm512_multishift_epi64_epi8(_mm512_set1_epi64(static_cast<long long>(control(j))), src);
    const __m512i low = T % 4 < 2 ? bytes : _mm512_srli_epi16(bytes, 8);
    return with_exponent(low, T % 2 == 0 ? 0x000E : 0x0070);
  }
};

// One pair of positions per step: 32 codes as bf16 times 32 x̂ in one vdpbf16ps.
template <int B>
struct Bf16Steps {
  using X = uint16_t;
  static constexpr int kBits = B, kSteps = Pairs<B>::kCount, kCodesPerStep = 32;
  template <int T, int R, int MB>
  [[gnu::always_inline]] static void step(const __m512i* const (&words)[R], const uint16_t* xb,
                                          int64_t xstride, __m512 (&acc)[R][MB]) {
    __m512i c[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) c[r] = Pairs<B>::template codes<T>(words[r]);
#pragma GCC unroll 16
    for (int m = 0; m < MB; ++m) {
      const __m512bh x = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xb + m * xstride + 32 * T));
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[r][m] = _mm512_dpbf16_ps(acc[r][m], reinterpret_cast<__m512bh>(c[r]), x);
    }
  }
};

template <int B>
void bf16_gemv(const PackedMatrix& W, const float* X, int64_t M, float* Y) {
  using F = Format<B>;
  using P = Pairs<B>;
  const CodeLayout lay = kernels::code_layout(B, W.cols);
  const int64_t blocks = total_blocks(lay), groups = W.groups_per_row();
  const int64_t padded = blocks * F::kBlockCodes, xstride = blocks * P::kCount * 32;
  std::vector<float> xr(padded, 0.0f), xg(M * groups, 0.0f), xc(M * groups, 0.0f);
  std::vector<uint16_t> xp(M * xstride);
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                              23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (int64_t m = 0; m < M; ++m) {
    // x̂ = bf16(x) as floats (exact), zero past cols.
    for (int64_t k = 0; k < W.cols; k += 16) {
      const __mmask16 live = W.cols - k >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (W.cols - k)) - 1);
      const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(live, X + m * W.cols + k));
      _mm512_storeu_ps(xr.data() + k, _mm512_cvtpbh_ps(h));
    }
    // X̂_g and X^c_g (order free: only the zero-point and base terms use them). c is constant over
    // 16 columns; xr is zero up to whole blocks, so a per-channel group may end mid-vector.
    for (int64_t g = 0; g < groups; ++g) {
      __m512 sum = _mm512_setzero_ps(), based = _mm512_setzero_ps();
      for (int64_t k = g * W.group; k < std::min((g + 1) * W.group, W.cols); k += 16) {
        const __m512 v = _mm512_loadu_ps(xr.data() + k);
        sum = _mm512_add_ps(sum, v);
        based = _mm512_fmadd_ps(_mm512_set1_ps(static_cast<float>(P::base(k % F::kBlockCodes / 16))), v, based);
      }
      xg[m * groups + g] = _mm512_reduce_add_ps(sum);
      xc[m * groups + g] = _mm512_reduce_add_ps(based);
    }
    // Pair t of block b: lane i holds c·x̂ at positions lo(t), hi(t) of lane i (exact: c is a power
    // of two and lo(t), hi(t) share it).
    uint16_t* dst = xp.data() + m * xstride;
    for (int64_t b = 0; b < blocks; ++b)
      for_positions<P::kCount>([&](auto tc) {
        constexpr int t = decltype(tc)::value;
        static_assert(P::base(P::lo(t)) == P::base(P::hi(t)));
        // Steps t of one run of kGroupCodes / 32 read only that run's kGroupCodes / 16 positions.
        static_assert(P::lo(t) / (P::kGroupCodes / 16) == t / (P::kGroupCodes / 32) &&
                      P::hi(t) / (P::kGroupCodes / 16) == t / (P::kGroupCodes / 32));
        const float* xblock = xr.data() + b * F::kBlockCodes;
        const __m512 c = _mm512_set1_ps(static_cast<float>(P::base(P::lo(t))));
        const __m512bh two = _mm512_cvtne2ps_pbh(_mm512_mul_ps(c, _mm512_loadu_ps(xblock + 16 * P::hi(t))),
                                                 _mm512_mul_ps(c, _mm512_loadu_ps(xblock + 16 * P::lo(t))));
        _mm512_storeu_si512(dst + (b * P::kCount + t) * 32,
                            _mm512_permutexvar_epi16(interleave, reinterpret_cast<__m512i>(two)));
      });
  }
  const avx512::GemvInput in{xp.data(), xstride, xg.data(), xc.data()};
  avx512::gemv<Bf16Steps<B>>(W, lay, in, M, Y);
}

}  // namespace

bool avx512_bf16_gemv_covers(const PackedMatrix& W) {
  if (!cpu_has_avx512_bf16() || !cpu_has_avx512_vbmi()) return false;
  if (W.bits != 3 && W.bits != 4) return false;
  if (W.group == W.cols) return true;
  return W.group % (W.bits == 3 ? Pairs<3>::kGroupCodes : Pairs<4>::kGroupCodes) == 0;
}

int bf16_gemv_code_base(int bits, int64_t k) {
  return bits == 3 ? Pairs<3>::base(k % Format<3>::kBlockCodes / 16) : Pairs<4>::base(k % Format<4>::kBlockCodes / 16);
}

void packed_gemv_bf16_avx512(const PackedMatrix& W, const float* X, int64_t M, float* Y) {
  return W.bits == 3 ? bf16_gemv<3>(W, X, M, Y) : bf16_gemv<4>(W, X, M, Y);
}

}  // namespace ikv::kernels::detail
