#include "kernels/half_matrix.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "io/dtype.h"

namespace ikv::kernels {

HalfMatrix owned_half(Half type, std::vector<uint16_t> values) {
  auto buf = std::make_shared<const std::vector<uint16_t>>(std::move(values));
  return HalfMatrix{type, buf->data(), buf};
}

void half_to_f32(Half type, const uint16_t* src, int64_t n, float* out) {
  int64_t i = 0;
  if (type == Half::kF16) {
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    for (; i < n; ++i) out[i] = io::fp16_to_fp32(src[i]);
  } else {
    for (; i + 8 <= n; i += 8) {
      const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
      _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
    }
    for (; i < n; ++i) out[i] = io::bf16_to_fp32(src[i]);
  }
}

std::vector<float> half_to_f32(Half type, const uint16_t* src, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) if (n > (1 << 20))
  for (int64_t i0 = 0; i0 < n; i0 += 1 << 16) half_to_f32(type, src + i0, std::min<int64_t>(1 << 16, n - i0), out.data() + i0);
  return out;
}

void half_to_bf16(Half type, const uint16_t* src, int64_t n, uint16_t* out) {
  if (type == Half::kBf16) return void(std::memcpy(out, src, static_cast<size_t>(n) * 2));
#pragma omp parallel for schedule(static) if (n > (1 << 20))
  for (int64_t i = 0; i < n; ++i) out[i] = io::fp32_to_bf16(io::fp16_to_fp32(src[i]));
}

}  // namespace ikv::kernels
