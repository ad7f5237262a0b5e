#include "kernels/kv_quant.h"

#include <algorithm>
#include <cmath>

#include "io/error.h"

namespace ikv::kernels {

void fake_quantize_kv(float* x, int64_t n, int bits) {
  if (bits < 2 || bits > 8) fail("KV-cache quantization: bits ", bits, " out of range (supported: 2..8)");
  if (n <= 0) return;
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  fake_quantize_kv_range(x, n, bits, lo, hi);
}

void fake_quantize_kv_range(float* x, int64_t n, int bits, float lo, float hi) {
  if (bits < 2 || bits > 8) fail("KV-cache quantization: bits ", bits, " out of range (supported: 2..8)");
  const float qmax = static_cast<float>((1 << bits) - 1);
  // Unlike the weight quantizer the zero point is not clamped to the code range: it is the
  // rounded (clamped to +-1e4) offset itself, as in the reference.
  const float scale = std::clamp((hi - lo) / qmax, 1e-5f, 1e4f);
  const float zero = std::nearbyint(std::clamp(-lo / scale, -1e4f, 1e4f));
  for (int64_t i = 0; i < n; ++i) {
    const float q = std::clamp(std::nearbyint(x[i] / scale) + zero, 0.0f, qmax);
    x[i] = (q - zero) * scale;
  }
}

}  // namespace ikv::kernels
