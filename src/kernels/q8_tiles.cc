#include "kernels/q8_tiles.h"

#include <algorithm>
#include <cstring>

#include "io/dtype.h"
#include "io/error.h"
#include "kernels/cpu.h"

namespace ikv::kernels {

bool q8_tiles_cover(const kernels::PackedMatrix& W) {
  return (W.bits == 3 || W.bits == 4) && (W.group == W.cols || W.group % kQ8Block == 0);
}

Q8Tiles tile_for_q8(const kernels::PackedMatrix& W) {
  if (!q8_tiles_cover(W))
    fail("q8 tiles: need 3- or 4-bit codes with groups of 128k columns or per-channel, got ", W.bits,
         " bits, group ", W.group);
  Q8Tiles T;
  T.bits = W.bits;
  T.rows = W.rows;
  T.cols = W.cols;
  T.group = W.group;
  T.sym = W.sym;
  T.tiles = (W.rows + 15) / 16;
  T.units = (W.cols + kQ8Block - 1) / kQ8Block;
  const int64_t groups = T.groups(), uw = T.unit_words();
  T.codes.resize(T.tiles * T.units * uw);
  T.scales.assign(T.tiles * groups * 16, 0);
  T.zeros.assign(T.tiles * groups * 8, 0);
  const kernels::CodeLayout lay = kernels::code_layout(W.bits, W.cols);
#pragma omp parallel for schedule(dynamic)
  for (int64_t t = 0; t < T.tiles; ++t) {
    // The tile's codes as bytes [16][units · 128], zero past the matrix.
    std::vector<uint8_t> c(16 * T.units * kQ8Block, 0);
    const int64_t width = T.units * kQ8Block;
    for (int r = 0; r < 16 && 16 * t + r < W.rows; ++r) {
      const int64_t n = 16 * t + r;
      const kernels::CodeWord* row = W.codes.data() + n * lay.row_words;
      for (int64_t k = 0; k < W.cols; ++k) c[r * width + k] = static_cast<uint8_t>(kernels::code_at(row, lay, W.bits, k));
      for (int64_t g = 0; g < groups; ++g) {
        T.scales[(t * groups + g) * 16 + r] = W.scales[n * groups + g];
        T.zeros[(t * groups + g) * 8 + r % 8] |= static_cast<uint8_t>(kernels::zero_point(W, n, g) << (4 * (r / 8)));
      }
    }
    for (int64_t u = 0; u < T.units; ++u) {
      auto* bytes = reinterpret_cast<uint8_t*>(T.codes.data() + (t * T.units + u) * uw);
      auto code = [&](int r, int64_t col) { return c[r * width + u * kQ8Block + col]; };
      for (int r = 0; r < 16; ++r)
        for (int j = 0; j < 4; ++j) {
          if (W.bits == 4) {
            for (int w = 0; w < 16; ++w)
              bytes[64 * w + 4 * r + j] = static_cast<uint8_t>(code(r, 8 * w + j) | code(r, 8 * w + 4 + j) << 4);
          } else {
            for (int w = 0; w < 8; ++w) {
              uint8_t b = 0;
              for (int s = 0; s < 4; ++s) b |= static_cast<uint8_t>((code(r, 4 * (4 * w + s) + j) & 3) << (2 * s));
              bytes[64 * w + 4 * r + j] = b;
            }
          }
        }
      if (W.bits == 3) {
        for (int q = 0; q < 32; ++q) {
          uint64_t high = 0;
          for (int r = 0; r < 16; ++r)
            for (int j = 0; j < 4; ++j) high |= static_cast<uint64_t>(code(r, 4 * q + j) >> 2) << (4 * r + j);
          std::memcpy(bytes + 512 + 8 * q, &high, 8);
        }
      }
    }
  }
  return T;
}

int q8_tile_code(const Q8Tiles& T, int64_t n, int64_t k) {
  const int64_t t = n / 16, u = k / kQ8Block;
  const int r = static_cast<int>(n % 16), col = static_cast<int>(k % kQ8Block), q = col / 4, j = col % 4;
  const auto* bytes = reinterpret_cast<const uint8_t*>(T.codes.data() + (t * T.units + u) * T.unit_words());
  if (T.bits == 4) return (bytes[64 * (q / 2) + 4 * r + j] >> (4 * (q % 2))) & 0xF;
  const int low = (bytes[64 * (q / 4) + 4 * r + j] >> (2 * (q % 4))) & 3;
  const int high = (bytes[512 + 8 * q + (4 * r + j) / 8] >> ((4 * r + j) % 8)) & 1;
  return low | high << 2;
}

kernels::PackedMatrix untile_q8(const Q8Tiles& T) {
  const int64_t groups = T.groups();
  const int offset = T.sym ? 1 << (T.bits - 1) : 0;  // pack_codes takes sym codes signed
  std::vector<int32_t> q(static_cast<size_t>(T.rows * T.cols)), zeros(T.sym ? 0 : T.rows * groups);
  std::vector<float> scales(static_cast<size_t>(T.rows * groups));
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < T.rows; ++n) {
    for (int64_t k = 0; k < T.cols; ++k) q[n * T.cols + k] = q8_tile_code(T, n, k) - offset;
    const int64_t t = n / 16, r = n % 16;
    for (int64_t g = 0; g < groups; ++g) {
      scales[n * groups + g] = io::fp16_to_fp32(T.scales[(t * groups + g) * 16 + r]);
      if (!T.sym) zeros[n * groups + g] = (T.zeros[(t * groups + g) * 8 + r % 8] >> (4 * (r / 8))) & 0xF;
    }
  }
  const kernels::QuantSpec spec{T.bits, T.group == T.cols ? -1 : static_cast<int>(T.group), T.sym};
  return kernels::pack_codes(q.data(), scales.data(), T.sym ? nullptr : zeros.data(), T.rows, T.cols, spec,
                             "q8 tiles");
}

size_t q8_tiles_bytes(const Q8Tiles& T) {
  return T.codes.size() * sizeof(kernels::CodeWord) + T.scales.size() * 2 + T.zeros.size();
}

bool q8_tiles_runs_here() { return cpu_has_avx512_vnni(); }

void q8_tiles_matmul(const Q8Tiles& T, const float* X, int64_t M, float* Y) {
  if (M <= 0 || T.rows <= 0) return;
  if (!q8_tiles_runs_here()) fail("q8 tiles: this CPU has no AVX512_VNNI (or IKV_NO_AVX512 is set)");
  const int64_t width = T.units * kQ8Block;
  std::vector<int8_t> q(M * width);
  std::vector<float> sx(M * T.units), xsum(M * T.units);
#pragma omp parallel for if (M > 4)
  for (int64_t m = 0; m < M; ++m) {
    quantize_q8(X + m * T.cols, 1, T.cols, q.data() + m * width, sx.data() + m * T.units);
    for (int64_t i = m * T.units; i < (m + 1) * T.units; ++i) {
      int32_t sum = 0;
      for (int64_t k = 0; k < kQ8Block; ++k) sum += q[i * kQ8Block + k];
      xsum[i] = sx[i] * static_cast<float>(sum);
    }
  }
  detail::q8_tiles_gemv_avx512(T, {q.data(), width, sx.data(), xsum.data()}, M, Y);
}

}  // namespace ikv::kernels
