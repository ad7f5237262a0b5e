#include "quant/rtn.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "io/error.h"

namespace ikv::quant {

GroupParams rtn_group_params(const float* w, int64_t n, int bits, bool sym) {
  GroupParams p;
  if (sym) {
    float amax = 0;
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(w[i]));
    p.scale = std::max(amax, 1e-5f) / static_cast<float>((1 << (bits - 1)) - 1);
    return p;
  }
  float lo = w[0], hi = w[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, w[i]);
    hi = std::max(hi, w[i]);
  }
  const float qmax = static_cast<float>((1 << bits) - 1);
  p.scale = std::max(hi - lo, 1e-5f) / qmax;
  p.zero = static_cast<int>(std::clamp(-std::nearbyint(lo / p.scale), 0.0f, qmax));
  return p;
}

int rtn_code(float w, const GroupParams& p, int bits, bool sym) {
  const float lo = sym ? -static_cast<float>(1 << (bits - 1)) : 0.0f;
  const float hi = sym ? static_cast<float>((1 << (bits - 1)) - 1) : static_cast<float>((1 << bits) - 1);
  return static_cast<int>(std::clamp(std::nearbyint(w / p.scale) + static_cast<float>(p.zero), lo, hi));
}

void fake_quantize_rtn(const float* w, int64_t rows, int64_t cols, const kernels::QuantSpec& spec,
                       float* out) {
  kernels::validate_spec(spec, cols, "weight");
  const int64_t group = spec.group == -1 ? cols : spec.group;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < rows; ++n) {
    for (int64_t k0 = 0; k0 < cols; k0 += group) {
      const float* src = w + n * cols + k0;
      float* dst = out + n * cols + k0;
      const GroupParams p = rtn_group_params(src, group, spec.bits, spec.sym);
      // Float arithmetic throughout so a NaN weight stays NaN instead of an int conversion.
      const float qlo = spec.sym ? -static_cast<float>(1 << (spec.bits - 1)) : 0.0f;
      const float qhi = static_cast<float>(spec.sym ? (1 << (spec.bits - 1)) - 1 : (1 << spec.bits) - 1);
      const float zero = static_cast<float>(p.zero);
      for (int64_t i = 0; i < group; ++i) {
        const float q = std::clamp(std::nearbyint(src[i] / p.scale) + zero, qlo, qhi);
        dst[i] = (q - zero) * p.scale;
      }
    }
  }
}

kernels::PackedMatrix quantize_rtn(const float* w, int64_t rows, int64_t cols, const kernels::QuantSpec& spec,
                          const std::string& what) {
  kernels::validate_spec(spec, cols, what);
  if (rows <= 0) fail(what, ": row count ", rows, " must be positive");
  const int64_t group = spec.group == -1 ? cols : spec.group;
  const int64_t groups = cols / group;
  for (int64_t i = 0; i < rows * cols; ++i)
    if (!std::isfinite(w[i])) fail(what, ": non-finite weight ", w[i], " at row ", i / cols, " col ", i % cols);

  std::vector<int32_t> q(rows * cols);
  std::vector<float> scales(rows * groups);
  std::vector<int32_t> zeros(spec.sym ? 0 : rows * groups);
  bool overflow = false;
#pragma omp parallel for schedule(static) reduction(|| : overflow)
  for (int64_t n = 0; n < rows; ++n) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* src = w + n * cols + g * group;
      // Codes and zero points come from the exact fp32 scale, so they are the reference
      // quantizer's (fake_quantize_rtn) bit for bit; only the stored scale is rounded to fp16.
      // (Deriving the codes from the rounded scale instead flips codes at rounding ties and moved
      // testbed-26M's W3 perplexity 0.6% away from the fp32 reference.)
      const GroupParams p = rtn_group_params(src, group, spec.bits, spec.sym);
      const float stored = kernels::round_scale_to_fp16(p.scale);
      if (!std::isfinite(stored)) {
        overflow = true;
        continue;
      }
      scales[n * groups + g] = stored;
      if (!spec.sym) zeros[n * groups + g] = p.zero;
      for (int64_t i = 0; i < group; ++i)
        q[n * cols + g * group + i] = rtn_code(src[i], p, spec.bits, spec.sym);
    }
  }
  if (overflow) fail(what, ": a group's scale exceeds the fp16 maximum 65504 (weights too large to pack)");
  return kernels::pack_codes(q.data(), scales.data(), spec.sym ? nullptr : zeros.data(), rows, cols, spec, what);
}

kernels::PackedMatrix quantize_rtn_by_rows(int64_t rows, int64_t cols, const kernels::QuantSpec& spec,
                                           const std::string& what,
                                           const std::function<void(int64_t r0, int64_t n, float* out)>& rows_of,
                                           int64_t chunk_rows) {
  kernels::validate_spec(spec, cols, what);
  if (rows <= 0) fail(what, ": row count ", rows, " must be positive");
  // An even number of rows per chunk: zero points at <= 4 bits are nibbles, two groups per byte, so
  // a chunk of even rows ends on a byte and the chunks' zero bytes simply concatenate.
  chunk_rows = std::max<int64_t>(2, chunk_rows + (chunk_rows & 1));
  kernels::PackedMatrix out;
  std::vector<float> w;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
    const int64_t n = std::min(chunk_rows, rows - r0);
    w.resize(static_cast<size_t>(n * cols));
    rows_of(r0, n, w.data());
    kernels::PackedMatrix part = quantize_rtn(w.data(), n, cols, spec, what);
    if (r0 == 0) {
      out = std::move(part);
      continue;
    }
    out.rows += part.rows;
    out.codes.insert(out.codes.end(), part.codes.begin(), part.codes.end());
    out.scales.insert(out.scales.end(), part.scales.begin(), part.scales.end());
    out.zeros.insert(out.zeros.end(), part.zeros.begin(), part.zeros.end());
  }
  return out;
}

}  // namespace ikv::quant
