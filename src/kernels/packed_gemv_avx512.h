// The small-M GEMV driver shared by the packed decoders (include from *_avx512.cc only).
//
// y[m, n] = Σ_g s_g·S_g − Σ_g s_g·z_g·X_g, with S_g = Σ_{k∈g} q_k x_k accumulated in registers and
// X_g = Σ_{k∈g} x_k computed once per call: scale and zero point never enter the inner loop. A
// decoder (Steps) says how one step of a block turns codes and x into partial sums:
//   kBits, kSteps (steps per block), kCodesPerStep (codes per step, and so x elements per step in
//   its own layout, type X), and step<T, R, MB>(words, xb, xstride, acc) for step T of a block.
// A decoder whose codes read q + c_k (the bf16 one) passes X^c_g = Σ_{k∈g} c_k x_k too, and the
// driver subtracts Σ_g s_g·X^c_g.
// R rows of W are decoded together so each x vector serves all of them.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "kernels/packed_avx512.h"

namespace ikv::kernels::detail::avx512 {

struct GemvInput {
  const void* x;        // M rows of x in the decoder's layout (type Steps::X), zero past cols
  int64_t xstride;      // elements per row of x
  const float* xg;      // M rows of X_g, `groups` per row
  const float* xbase = nullptr;  // M rows of X^c_g when the decoded codes carry a base c_k
};

// Decoder steps per group; int64 max for per-channel scales (the row is one group).
template <class Steps>
int64_t group_steps(const PackedMatrix& W) {
  return W.group == W.cols ? std::numeric_limits<int64_t>::max() : W.group / Steps::kCodesPerStep;
}

// Y[m, n0 + r] for r < R, m < MB. GS says when per-group sums are folded into the row totals: a
// data-dependent branch inside the unrolled loop over a block's steps makes GCC keep every
// accumulator in memory, so the common group sizes get compile-time flush points. GS > 0: after
// every GS steps (GS divides kSteps); GS == 0: after whole blocks (or only at the end, per-channel);
// GS < 0: counted at run time (any other group size). Flattened so that nothing stays a call.
// s, sz: row n0's group constants (group_constants), each next row's `groups` floats further on.
template <class Steps, int R, int MB, int GS>
[[gnu::flatten]] void gemv_rows(const PackedMatrix& W, const CodeLayout& lay, const GemvInput& in, int64_t n0,
                                const float* s, const float* sz, float* Y) {
  constexpr int B = Steps::kBits;
  using F = Format<B>;
  using X = typename Steps::X;
  const int64_t blocks = total_blocks(lay), groups = W.groups_per_row();
  const int64_t steps_per_group = group_steps<Steps>(W);
  const int64_t group_blocks = GS == 0 ? steps_per_group / Steps::kSteps : 0;
  const CodeWord* rows[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) rows[r] = W.codes.data() + (n0 + r) * lay.row_words;
  CodeWord tail[R][F::W];
  const int64_t row_set_words = R * lay.row_words;
  const int64_t ahead_words = std::max<int64_t>(1, (int64_t{16} << 10) / (64 * row_set_words)) * row_set_words;
  // This group's partial sums, and Σ over groups of s·(those). R·MB >= 4 independent chains hide
  // the FMA / vdpbf16ps latency. The unroll pragmas here and in the steps make every index a
  // constant before GCC's scalar replacement runs, which is what keeps both arrays in registers.
  __m512 acc[R][MB], tot[R][MB];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int m = 0; m < MB; ++m) acc[r][m] = tot[r][m] = _mm512_setzero_ps();
  int64_t left = GS == 0 ? group_blocks : steps_per_group, g = 0;
  auto flush = [&]() __attribute__((always_inline)) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      // Flushes past the last group (the tail block's padding, the final one) add zero sums.
      const __m512 scale = _mm512_set1_ps(g < groups ? s[r * groups + g] : 0.0f);
#pragma GCC unroll 16
      for (int m = 0; m < MB; ++m) {
        tot[r][m] = _mm512_fmadd_ps(scale, acc[r][m], tot[r][m]);
        acc[r][m] = _mm512_setzero_ps();
      }
    }
    ++g;
  };
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const __m512i* words[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      words[r] = block_words<B>(rows[r], lay, blk, tail[r]);
      // Later rows follow these in memory: fetch the same block of the rows ~16 KB ahead into L2.
      // A core streams only ~10 GB/s on its own (misses in flight / latency); prefetching ahead
      // into L2 (more outstanding misses than L1) raised the 2-core GEMV from ~18 to ~24 GB/s.
      // 4-16 KB ahead measured alike and 4-8% faster than 64 KB, interleaved in one process;
      // walking R far-apart stretches as separate streams measured no better.
      const char* ahead = reinterpret_cast<const char*>(rows[r] + ahead_words + blk * F::W);
      for (int w = 0; w < F::W; ++w) _mm_prefetch(ahead + 64 * w, _MM_HINT_T1);
    }
    const X* xb = static_cast<const X*>(in.x) + blk * Steps::kSteps * Steps::kCodesPerStep;
    for_positions<Steps::kSteps>([&](auto tc) __attribute__((always_inline)) {
      constexpr int T = decltype(tc)::value;
      Steps::template step<T, R, MB>(words, xb, in.xstride, acc);
      if constexpr (GS > 0) {
        if constexpr ((T + 1) % GS == 0) flush();
      } else if constexpr (GS < 0) {
        if (--left == 0) {
          left = steps_per_group;
          flush();
        }
      }
    });
    if constexpr (GS == 0) {
      if (--left == 0) {
        left = group_blocks;
        flush();
      }
    }
  }
  flush();  // the open group (per-channel, or zeros past the last group)
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int m = 0; m < MB; ++m) {
      // y = Σ lanes of (tot − Σ_g s_g z_g X_g [− Σ_g s_g X^c_g]): one horizontal sum per row.
      __m512 y = tot[r][m];
      for (int64_t gg = 0; gg < groups; gg += 16) {
        const __mmask16 k = groups - gg >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (groups - gg)) - 1);
        y = _mm512_fnmadd_ps(_mm512_maskz_loadu_ps(k, sz + r * groups + gg),
                             _mm512_maskz_loadu_ps(k, in.xg + m * groups + gg), y);
        if (in.xbase)
          y = _mm512_fnmadd_ps(_mm512_maskz_loadu_ps(k, s + r * groups + gg),
                               _mm512_maskz_loadu_ps(k, in.xbase + m * groups + gg), y);
      }
      Y[m * W.rows + n0 + r] = _mm512_reduce_add_ps(y);
    }
}

// Rows [begin, end), whose group constants are s, sz (groups per row, consecutive).
template <class Steps, int GS, int R, int MB>
void gemv_range(const PackedMatrix& W, const CodeLayout& lay, const GemvInput& in, int64_t begin, int64_t end,
                const float* s, const float* sz, float* Y) {
  int64_t n = begin;
  for (; n + R <= end; n += R) {
    const int64_t c = (n - begin) * W.groups_per_row();
    gemv_rows<Steps, R, MB, GS>(W, lay, in, n, s + c, sz + c, Y);
  }
  for (; n < end; ++n) {
    const int64_t c = (n - begin) * W.groups_per_row();
    gemv_rows<Steps, 1, MB, GS>(W, lay, in, n, s + c, sz + c, Y);
  }
}

// Rows of x one pass over W serves: the largest MB gemv_range_for takes.
inline constexpr int64_t kRowsPerPass = 4;

template <class Steps, int GS>
void gemv_range_for(int64_t M, const PackedMatrix& W, const CodeLayout& lay, const GemvInput& in,
                    int64_t begin, int64_t end, const float* s, const float* sz, float* Y) {
  switch (M) {  // R * MB <= 8 keeps the accumulators in registers
    case 1: return gemv_range<Steps, GS, 4, 1>(W, lay, in, begin, end, s, sz, Y);
    case 2: return gemv_range<Steps, GS, 2, 2>(W, lay, in, begin, end, s, sz, Y);
    case 3: return gemv_range<Steps, GS, 2, 3>(W, lay, in, begin, end, s, sz, Y);
    default: return gemv_range<Steps, GS, 2, 4>(W, lay, in, begin, end, s, sz, Y);
  }
}

// All rows of W, M rows of x: chunks of rows handed out dynamically, each a contiguous ~1 MB
// stretch of codes (only its start is not prefetched), so a core that loses time to another
// process takes fewer. A chunk's group constants are converted up front in one pass over its rows'
// consecutive scales and zero points: made row by row just before use they cost ~20% of the
// GEMV's time. More rows of x than one pass takes run kRowsPerPass at a time over each chunk of W
// while it is in cache.
template <class Steps>
void gemv(const PackedMatrix& W, const CodeLayout& lay, const GemvInput& in, int64_t M, float* Y) {
  constexpr int kSteps = Steps::kSteps, kG128 = 128 / Steps::kCodesPerStep;  // the default group
  const int64_t gs = group_steps<Steps>(W);
  const int schedule = gs == kG128 || gs == kSteps ? static_cast<int>(gs)
                       : gs == std::numeric_limits<int64_t>::max() || gs % kSteps == 0 ? 0 : -1;
  const int64_t chunk = std::max<int64_t>(8, (int64_t{1} << 20) / (lay.row_words * 64) / 8 * 8);
  const int64_t chunks = (W.rows + chunk - 1) / chunk, groups = W.groups_per_row();
#pragma omp parallel
  {
    // Written before they are read: left uninitialised (zeroing ~100 KB per call shows at M = 1).
    const auto s = std::make_unique_for_overwrite<float[]>(chunk * groups);
    const auto sz = std::make_unique_for_overwrite<float[]>(chunk * groups);
#pragma omp for schedule(dynamic) nowait
    for (int64_t i = 0; i < chunks; ++i) {
      const int64_t begin = i * chunk, end = std::min(W.rows, begin + chunk);
      group_constants(W, begin * groups, (end - begin) * groups, s.get(), sz.get());
      for (int64_t m0 = 0; m0 < M; m0 += kRowsPerPass) {
        const GemvInput part{static_cast<const typename Steps::X*>(in.x) + m0 * in.xstride, in.xstride,
                             in.xg + m0 * groups, in.xbase ? in.xbase + m0 * groups : nullptr};
        const int64_t mb = std::min(kRowsPerPass, M - m0);
        float* Ym = Y + m0 * W.rows;
        if (schedule == kSteps) {
          gemv_range_for<Steps, kSteps>(mb, W, lay, part, begin, end, s.get(), sz.get(), Ym);
        } else if (schedule == kG128) {
          if constexpr (kG128 != kSteps) gemv_range_for<Steps, kG128>(mb, W, lay, part, begin, end, s.get(), sz.get(), Ym);
        } else if (schedule == 0) {
          gemv_range_for<Steps, 0>(mb, W, lay, part, begin, end, s.get(), sz.get(), Ym);
        } else {
          gemv_range_for<Steps, -1>(mb, W, lay, part, begin, end, s.get(), sz.get(), Ym);
        }
      }
    }
  }
}

}  // namespace ikv::kernels::detail::avx512
