// Dense weights kept in a checkpoint's 16-bit storage (bf16 or fp16), usually read in place from
// the memory-mapped file: a 7B model's linears are 13.5 GB as stored and 27 GB as fp32. The
// conversions to fp32 are exact (every bf16 and fp16 value is an fp32 value), so computing on the
// upcast panels is computing on the checkpoint's weights, as transformers does when it loads a
// bf16 or fp16 checkpoint as float32.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace ikv::kernels {

enum class Half { kBf16, kF16 };

// A [rows, cols] row-major matrix of 16-bit floats that `owner` keeps alive: a tensor of a mapped
// checkpoint (io::hold_range: the pages leave the resident set when the last holder goes), or an
// owned buffer (owned_half). Copies share the storage; it is never written through.
struct HalfMatrix {
  Half type = Half::kBf16;
  const uint16_t* data = nullptr;
  std::shared_ptr<const void> owner;
};

// A HalfMatrix owning its values.
HalfMatrix owned_half(Half type, std::vector<uint16_t> values);
// src[0, n) upcast exactly to fp32 (vectorized; fp16 by F16C, bf16 by a shift).
void half_to_f32(Half type, const uint16_t* src, int64_t n, float* out);
std::vector<float> half_to_f32(Half type, const uint16_t* src, int64_t n);
// src[0, n) rounded to bf16 (round to nearest even, as torch's .bfloat16()): exact for bf16 input.
void half_to_bf16(Half type, const uint16_t* src, int64_t n, uint16_t* out);

}  // namespace ikv::kernels
