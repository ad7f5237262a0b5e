// Round-to-nearest (RTN) group quantization, the numerics of DESIGN.md "Numerics that must match
// the references" (they are those of AWQ/IntactKV's pseudo_quantize_tensor):
//   asym: scale = max(max - min, 1e-5) / (2^b - 1), zero = clamp(-round(min / scale), 0, 2^b - 1),
//         q = clamp(round(w / scale) + zero, 0, 2^b - 1), w' = (q - zero) * scale;
//   sym:  scale = max(max|w|, 1e-5) / (2^(b-1) - 1), q = clamp(round(w / scale), -2^(b-1),
//         2^(b-1) - 1), w' = q * scale  (the 1e-5 floor is AWQ's, it keeps all-zero groups finite);
// round is half to even (std::nearbyint in the default rounding mode, as torch.round).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "kernels/packed_matrix.h"

namespace ikv::quant {

// Scale and integer zero point of one group in exact fp32 (sym: zero = 0 and q is signed); the
// packed format stores the scale rounded to fp16 (quantize_rtn).
struct GroupParams {
  float scale = 0;
  int zero = 0;
};
GroupParams rtn_group_params(const float* w, int64_t n, int bits, bool sym);
// q for one value under the given params (asym: [0, 2^b - 1]; sym: signed range).
int rtn_code(float w, const GroupParams& p, int bits, bool sym);

// Quantize then dequantize w[rows][cols] in exact fp32 (scales are not rounded to fp16): the
// reference the evaluation compares against. Validates the spec (tensor name "weight").
void fake_quantize_rtn(const float* w, int64_t rows, int64_t cols, const kernels::QuantSpec& spec,
                       float* out);

// RTN into the packed format. Codes and zero points are exactly fake_quantize_rtn's (computed with
// the fp32 scale); the stored scale is that scale rounded to fp16, so dequantize(result) differs
// from fake_quantize_rtn by at most a relative 2^-11 per weight. Throws ikv::Error
// naming `what` on a bad spec, a non-finite weight or a scale beyond the fp16 range.
kernels::PackedMatrix quantize_rtn(const float* w, int64_t rows, int64_t cols, const kernels::QuantSpec& spec,
                          const std::string& what);

// quantize_rtn of a [rows, cols] matrix given a block of rows at a time: rows_of(r0, n, out) writes
// rows r0..r0+n-1 as fp32 into out [n, cols]. RTN treats each row alone, so the result is
// quantize_rtn's on the whole matrix bit for bit, with fp32 memory for chunk_rows rows only (a
// 128k-vocabulary head is 2 GB as fp32, and the codes another 2 GB as int32, while quantizing).
kernels::PackedMatrix quantize_rtn_by_rows(int64_t rows, int64_t cols, const kernels::QuantSpec& spec,
                                           const std::string& what,
                                           const std::function<void(int64_t r0, int64_t n, float* out)>& rows_of,
                                           int64_t chunk_rows = 4096);

}  // namespace ikv::quant
