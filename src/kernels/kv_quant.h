// KV-cache quantization (DESIGN.md "KV-cache quantization"): the reference's dynamic per-token,
// per-head asymmetric quantizer, applied in place to each new key (after RoPE) and value vector
// of head_dim values as it enters the cache. An IntactKV prefix is never passed through it.
#pragma once
#include <cstdint>

namespace ikv::kernels {

// Over the n values of x (one token, one head):
//   scale = clamp((max - min) / (2^bits - 1), 1e-5, 1e4)
//   zero  = round(clamp(-min / scale, -1e4, 1e4))
//   q     = clamp(round(x / scale) + zero, 0, 2^bits - 1),  x' = (q - zero) * scale
// in fp32 with round half to even. bits in 2..8, else ikv::Error.
void fake_quantize_kv(float* x, int64_t n, int bits);
// The same with the range [lo, hi] given instead of taken from x: static KV scales (PrefixQuant),
// one range per layer and tensor calibrated beforehand. fake_quantize_kv is this with x's own
// min and max, so a token whose min and max equal the static range is quantized identically.
void fake_quantize_kv_range(float* x, int64_t n, int bits, float lo, float hi);

}  // namespace ikv::kernels
