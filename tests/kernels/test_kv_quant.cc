// KV-cache quantizer against hand-computed vectors (DESIGN.md "KV-cache quantization").
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "io/error.h"
#include "kernels/kv_quant.h"

namespace {

std::vector<float> kv(std::vector<float> x, int bits) {
  ikv::kernels::fake_quantize_kv(x.data(), static_cast<int64_t>(x.size()), bits);
  return x;
}

}  // namespace

TEST_CASE("kv quant: values on the grid are kept") {
  // min -1, max 2, 2 bits: scale = 3/3 = 1, zero = round(1) = 1, q = x + 1 in [0, 3].
  CHECK(kv({-1, 0, 1, 2}, 2) == std::vector<float>{-1, 0, 1, 2});
}

TEST_CASE("kv quant: rounding half to even") {
  // min 0, max 1.5, 2 bits: scale 0.5, zero round(-0 / 0.5) = 0; x / scale = 0, 1.5, 2.5, 3
  // -> round 0, 2, 2, 3 (ties to even) -> 0, 1.0, 1.0, 1.5.
  CHECK(kv({0.0f, 0.75f, 1.25f, 1.5f}, 2) == std::vector<float>{0.0f, 1.0f, 1.0f, 1.5f});
  // 0.3 / 0.5 = 0.6 -> 1 (plain rounding), 0.5 / 0.5 = 1.
  CHECK(kv({0.0f, 0.3f, 0.5f, 1.5f}, 2) == std::vector<float>{0.0f, 0.5f, 0.5f, 1.5f});
}

TEST_CASE("kv quant: asymmetric range with a fractional zero point") {
  // min -0.5, max 1, 3 bits: scale = 1.5 / 7, zero = round(0.5 / scale) = round(2.333) = 2.
  const float scale = 1.5f / 7.0f;
  const float zero = 2.0f;
  const std::vector<float> x = {-0.5f, 0.1f, 0.6f, 1.0f};
  std::vector<float> expect;
  for (float v : x) {
    const float q = std::fmin(std::fmax(std::nearbyint(v / scale) + zero, 0.0f), 7.0f);
    expect.push_back((q - zero) * scale);
  }
  // By hand: -0.5/s = -2.333 -> -2 -> q 0 -> -2s; 0.1/s = 0.467 -> 0 -> q 2 -> 0;
  // 0.6/s = 2.8 -> 3 -> q 5 -> 3s; 1.0/s = 4.667 -> 5 -> q 7 -> 5s.
  CHECK(expect == std::vector<float>{-2 * scale, 0.0f, 3 * scale, 5 * scale});
  CHECK(kv(x, 3) == expect);
}

TEST_CASE("kv quant: the scale clamps to [1e-5, 1e4] and the zero point to +-1e4") {
  // Constant vector: scale = 1e-5, -min/scale = -3e5 clamps to -1e4, so zero = -1e4 and
  // q = clamp(3e5 - 1e4, 0, 3) = 3: the reference returns (3 + 1e4) * 1e-5, not 3.
  const float expect = (3.0f + 1e4f) * 1e-5f;
  for (float v : kv({3, 3, 3, 3}, 2)) CHECK(v == expect);
  // Huge range: (1e6 - 0) / 3 clamps to 1e4; q = clamp(round(1e6 / 1e4), 0, 3) = 3 -> 3e4.
  CHECK(kv({0.0f, 1e6f}, 2) == std::vector<float>{0.0f, 3e4f});
}

TEST_CASE("kv quant: error shrinks with bits and stays within half a step") {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> x(128);
  for (float& v : x) v = dist(rng);
  float lo = x[0], hi = x[0];
  for (float v : x) lo = std::fmin(lo, v), hi = std::fmax(hi, v);
  double prev = 1e30;
  for (int bits : {2, 3, 4, 8}) {
    const auto y = kv(x, bits);
    const float step = (hi - lo) / static_cast<float>((1 << bits) - 1);
    double err = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      // Half a step, plus the zero point's rounding (up to half a step at the range ends).
      CHECK(std::fabs(y[i] - x[i]) <= step * 1.0001f);
      err += (y[i] - x[i]) * (y[i] - x[i]);
    }
    CHECK(err < prev);
    prev = err;
  }
}

TEST_CASE("kv quant: bits outside 2..8 are an error") {
  std::vector<float> x(4, 1.0f);
  CHECK_THROWS_AS(ikv::kernels::fake_quantize_kv(x.data(), 4, 1), ikv::Error);
  CHECK_THROWS_AS(ikv::kernels::fake_quantize_kv(x.data(), 4, 9), ikv::Error);
}
