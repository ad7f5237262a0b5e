// RTN numerics against hand-computed groups, the spec checks, and distortion on Gaussian weights.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include "io/error.h"
#include "quant/rtn.h"

using ikv::kernels::QuantSpec;

namespace {

std::vector<float> fake(const std::vector<float>& w, int64_t rows, const QuantSpec& spec) {
  std::vector<float> out(w.size());
  ikv::quant::fake_quantize_rtn(w.data(), rows, static_cast<int64_t>(w.size()) / rows, spec, out.data());
  return out;
}

std::vector<float> packed_dequant(const std::vector<float>& w, int64_t rows, const QuantSpec& spec) {
  const int64_t cols = static_cast<int64_t>(w.size()) / rows;
  const auto m = ikv::quant::quantize_rtn(w.data(), rows, cols, spec, "test.weight");
  std::vector<float> out(w.size());
  ikv::kernels::dequantize(m, out.data());
  return out;
}

using ikv::test::gaussian;

double mse(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return s / static_cast<double>(a.size());
}

std::string error_of(const QuantSpec& spec, int64_t cols) {
  try {
    ikv::kernels::validate_spec(spec, cols, "model.layers.0.mlp.down_proj.weight");
  } catch (const ikv::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("rtn asym 2-bit on a 1x8 row: scale 1, zero 1, ties to even") {
  // min -1, max 2: scale = 3/3 = 1, zero = clamp(-round(-1), 0, 3) = 1, q = clamp(round(w) + 1, 0, 3).
  // -0.5, 0.5 and 1.5 are ties: round(-0.5) = -0, round(0.5) = 0, round(1.5) = 2 (half to even).
  const std::vector<float> w = {-1.0f, -0.5f, 0.0f, 0.25f, 0.5f, 1.0f, 1.5f, 2.0f};
  const std::vector<float> expect = {-1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f, 2.0f, 2.0f};
  const QuantSpec spec{2, 8, false};
  CHECK(fake(w, 1, spec) == expect);
  CHECK(packed_dequant(w, 1, spec) == expect);  // scale 1 is exact in fp16: identical
  const auto p = ikv::quant::rtn_group_params(w.data(), 8, 2, false);
  CHECK(p.scale == 1.0f);
  CHECK(p.zero == 1);
}

TEST_CASE("rtn asym 3-bit: integers on a unit grid come back unchanged") {
  const std::vector<float> w = {-2, -1, 0, 1, 2, 3, 4, 5};  // scale 7/7, zero 2
  CHECK(fake(w, 1, {3, -1, false}) == w);
  CHECK(packed_dequant(w, 1, {3, -1, false}) == w);
}

TEST_CASE("rtn asym clamps: the zero point stays in [0, 2^b-1] and codes clamp with it") {
  // All positive: zero = clamp(-round(1/1), 0, 3) = 0, so 4 -> clamp(4 + 0, 0, 3) = 3.
  CHECK(fake({1, 2, 3, 4}, 1, {2, 4, false}) == std::vector<float>{1, 2, 3, 3});
  // All negative: zero = clamp(4, 0, 3) = 3, so -4 -> clamp(-4 + 3, 0, 3) = 0 -> (0 - 3) * 1.
  CHECK(fake({-4, -3, -2, -1}, 1, {2, 4, false}) == std::vector<float>{-3, -3, -2, -1});
  // A constant group: scale = 1e-5 / 15 (the floor), zero = clamp(-round(0.5 / s)) = 0,
  // q = clamp(round(0.5 / s), 0, 15) = 15: the reference maps it to 15 * s = 1e-5.
  const float s = 1e-5f / 15.0f;
  const auto out = fake(std::vector<float>(8, 0.5f), 1, {4, 8, false});
  for (float v : out) CHECK(v == 15.0f * s);
}

TEST_CASE("rtn sym 4-bit: scale max|w|/7, ties to even, signed codes") {
  // max|w| = 7 -> scale 1; 3.5 -> 4, -3.5 -> -4, 0.5 -> 0, 2.5 -> 2, -6.5 -> -6 (half to even).
  const std::vector<float> w = {7, -7, 3.5f, -3.5f, 0.5f, 1.5f, 2.5f, -6.5f};
  const std::vector<float> expect = {7, -7, 4, -4, 0, 2, 2, -6};
  CHECK(fake(w, 1, {4, 8, true}) == expect);
  CHECK(packed_dequant(w, 1, {4, 8, true}) == expect);
  // A zero group stays zero (AWQ's 1e-5 floor on max|w| keeps the scale finite).
  CHECK(fake(std::vector<float>(8, 0.0f), 1, {4, 8, true}) == std::vector<float>(8, 0.0f));
}

TEST_CASE("validate_spec names the tensor and the problem") {
  CHECK(error_of({4, 128, false}, 172) ==
        "model.layers.0.mlp.down_proj.weight: group size 128 does not divide input width 172 "
        "(use a divisor such as 4, or -1 for per-channel)");
  CHECK(error_of({4, 128, false}, 4096).empty());
  CHECK(error_of({4, -1, false}, 172).empty());
  CHECK(error_of({4, 4, false}, 172).empty());
  CHECK(error_of({1, 128, false}, 4096).find("bits 1 out of range") != std::string::npos);
  CHECK(error_of({9, 128, false}, 4096).find("bits 9 out of range") != std::string::npos);
  CHECK(error_of({4, 0, false}, 4096).find("group size 0") != std::string::npos);
  CHECK(error_of({4, -2, false}, 4096).find("group size -2") != std::string::npos);
  const std::vector<float> w(172, 1.0f);
  CHECK_THROWS_WITH_AS(ikv::quant::quantize_rtn(w.data(), 1, 172, {4, 128, false}, "layer.w"),
                       doctest::Contains("layer.w: group size 128"), ikv::Error);
  std::vector<float> bad(64, 1.0f);
  bad[5] = NAN;
  CHECK_THROWS_WITH_AS(ikv::quant::quantize_rtn(bad.data(), 1, 64, {4, 64, false}, "layer.w"),
                       doctest::Contains("layer.w: non-finite weight"), ikv::Error);
}

TEST_CASE("packed RTN differs from fp32 RTN only by the fp16 rounding of the scale") {
  // With s' = fp16(s) = s(1 + d), |d| <= 2^-11, both results lie within half a step of w unless a
  // code clamps; clamping can add the drift of the whole range, (2^b - 1)|s' - s| <= 2^b s 2^-11.
  // So per element |a - b| <= s / 2 + s' / 2 + 2^b s 2^-11, and codes differ only where w / s sits
  // within ~2^-11 (2^b) of a rounding boundary: a small fraction of elements.
  const int64_t rows = 64, cols = 512;
  const auto w = gaussian(rows * cols, 7);
  for (int bits : {2, 3, 4, 8}) {
    for (bool sym : {false, true}) {
      const QuantSpec spec{bits, 128, sym};
      const auto a = fake(w, rows, spec), b = packed_dequant(w, rows, spec);
      int64_t differ = 0;
      for (int64_t n = 0; n < rows; ++n)
        for (int64_t g = 0; g < cols / 128; ++g) {
          const float* src = w.data() + n * cols + g * 128;
          const float s = ikv::quant::rtn_group_params(src, 128, bits, sym).scale;
          const float bound = s * (1.0f + std::ldexp(1.0f, bits - 11)) + 1e-7f;
          for (int64_t i = 0; i < 128; ++i) {
            const int64_t j = n * cols + g * 128 + i;
            CHECK(std::fabs(a[j] - b[j]) <= bound);
            differ += std::fabs(a[j] - b[j]) > 0.5f * s;  // a code moved (the scale drift alone is < s / 16)
          }
        }
      // Expected fraction ~ 2^b · 2^-11 (distance to a boundary the drifted grid crosses); allow 2x.
      MESSAGE("bits " << bits << std::string(sym ? ", sym" : ", asym") << ": " << differ << " of " << rows * cols << " codes differ");
      CHECK(static_cast<double>(differ) <= std::ldexp(2.0 * rows * cols, bits - 11) + 16);
      // And the distortion is the same to within 1%.
      CHECK(mse(w, b) == doctest::Approx(mse(w, a)).epsilon(0.01));
    }
  }
}

TEST_CASE("distortion on Gaussian weights: W4 < W3 < W2 with the expected ratios") {
  // A step of range/(2^b - 1) gives MSE ~ step^2 / 12, so one bit fewer multiplies the MSE by
  // about ((2^b - 1) / (2^(b-1) - 1))^2: 4.6 from W4 to W3 and 5.4 from W3 to W2 (less at 2 bits,
  // where the rounding error is no longer uniform and the tails clamp).
  const int64_t rows = 128, cols = 1024;
  const auto w = gaussian(rows * cols, 11);
  const double e4 = mse(w, fake(w, rows, {4, 128, false}));
  const double e3 = mse(w, fake(w, rows, {3, 128, false}));
  const double e2 = mse(w, fake(w, rows, {2, 128, false}));
  MESSAGE("MSE W4 " << e4 << ", W3 " << e3 << ", W2 " << e2 << " (unit variance)");
  CHECK(e4 < e3);
  CHECK(e3 < e2);
  CHECK(e4 == doctest::Approx(0.0097).epsilon(0.25));  // step ~ 5.2 sigma / 15 at g128
  CHECK(e3 / e4 > 3.5);
  CHECK(e3 / e4 < 5.5);
  CHECK(e2 / e3 > 3.0);
  CHECK(e2 / e3 < 6.5);
  // Smaller groups track the local range: per-channel is worse than g128, g32 better.
  const double e4_pc = mse(w, fake(w, rows, {4, -1, false}));
  const double e4_g32 = mse(w, fake(w, rows, {4, 32, false}));
  CHECK(e4_g32 < e4);
  CHECK(e4 < e4_pc);
  // Symmetric spends a code on the sign-balanced grid: somewhat worse than asym at 4 bits.
  const double e4_sym = mse(w, fake(w, rows, {4, 128, true}));
  CHECK(e4_sym > e4);
  CHECK(e4_sym < 2.5 * e4);
}

TEST_CASE("quantize_rtn_by_rows: a block of rows at a time is quantize_rtn on the whole matrix, bit for bit") {
  std::mt19937 rng(7);
  std::normal_distribution<float> d;
  // 3 groups per row (odd), so an odd chunk would split a zero-point byte; 4-bit nibbles, 3 and 8 bits.
  const int64_t rows = 37, cols = 384;
  std::vector<float> w(rows * cols);
  for (float& x : w) x = d(rng);
  for (QuantSpec spec : {QuantSpec{4, 128, false}, QuantSpec{3, 128, false},
                                  QuantSpec{8, -1, false}, QuantSpec{4, 128, true}}) {
    CAPTURE(spec.bits);
    const ikv::kernels::PackedMatrix whole = ikv::quant::quantize_rtn(w.data(), rows, cols, spec, "w");
    for (int64_t chunk : {int64_t{1}, int64_t{5}, int64_t{8}, int64_t{64}}) {
      CAPTURE(chunk);
      int64_t next = 0;  // rows come in order, each once
      const ikv::kernels::PackedMatrix parts = ikv::quant::quantize_rtn_by_rows(rows, cols, spec, "w", [&](int64_t r0, int64_t n, float* out) {
        REQUIRE(r0 == next);
        next += n;
        std::copy_n(&w[r0 * cols], n * cols, out);
      }, chunk);
      CHECK(next == rows);
      CHECK(parts.rows == whole.rows);
      CHECK(parts.scales == whole.scales);
      CHECK(parts.zeros == whole.zeros);
      REQUIRE(parts.codes.size() == whole.codes.size());
      CHECK(std::memcmp(parts.codes.data(), whole.codes.data(), whole.codes.size() * sizeof(ikv::kernels::CodeWord)) == 0);
    }
  }
}
