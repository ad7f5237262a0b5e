// Scalar conversions between the storage dtypes of checkpoints and fp32 compute.
#pragma once
#include <cstdint>
#include <cstring>
#include <immintrin.h>

namespace ikv::io {

inline float fp16_to_fp32(uint16_t h) { return _cvtsh_ss(h); }
// Round to nearest even, as torch's .half() does.
inline uint16_t fp32_to_fp16(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

inline float bf16_to_fp32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even (NaN stays NaN), matching torch's .bfloat16().
inline uint16_t fp32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace ikv::io
