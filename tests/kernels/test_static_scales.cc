// Static per-tensor scales (PrefixQuant) in the kernels: with one fixed range instead of each
// token's own, the activation and KV quantizers give the dynamic result exactly when every token
// has that range (data without outliers), and differ, or clip, when a token stands out.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/int8_gemm.h"
#include "kernels/kv_quant.h"
#include "kernels/linear.h"
#include "test_util.h"

using namespace ikv;

namespace {

// Rows that all reach the same max |x| = 3 (one entry ±3 each, the rest random inside): data
// without a token that stands out.
std::vector<float> rows_without_outliers(int64_t M, int64_t K) {
  std::vector<float> x = test::gaussian(M * K, 5, 0.8f);
  for (float& v : x) v = std::clamp(v, -2.9f, 2.9f);
  for (int64_t m = 0; m < M; ++m) x[m * K + (m * 7) % K] = m % 2 ? 3.0f : -3.0f;
  return x;
}

}  // namespace

TEST_CASE("static activation scale == dynamic per-token scales on rows of equal range") {
  const int64_t M = 9, K = 64, N = 24;
  const std::vector<float> X = rows_without_outliers(M, K);
  for (int bits : {4, 8}) {
    const float scale = 3.0f / float((1 << (bits - 1)) - 1);  // max |x| of the calibration data
    std::vector<int8_t> qd(M * K), qs(M * K);
    std::vector<float> sd(M), ss(M);
    kernels::quantize_per_token(X.data(), M, K, bits, 1.0f, qd.data(), sd.data());
    kernels::quantize_static(X.data(), M, K, bits, scale, qs.data(), ss.data());
    CHECK(qd == qs);
    CHECK(sd == ss);
    // Through a linear: the layer's dynamic quantization and the static override agree exactly.
    kernels::Linear l = kernels::make_dense(test::gaussian(N * K, 6), N, K);
    kernels::set_act_quant(l, bits, 1.0f);
    std::vector<float> yd(M * N), ys(M * N);
    kernels::linear_forward(l, X.data(), M, yd.data());
    kernels::ActQuant a = l.act_quant;
    a.static_scale = scale;
    kernels::linear_forward(l, X.data(), M, ys.data(), a);
    CHECK(yd == ys);
    // A token with an outlier: its own scale grows, the static one does not (it clips), and the
    // rows' results part.
    std::vector<float> Xo = X;
    Xo[5 * K + 3] = 40.0f;
    kernels::linear_forward(l, Xo.data(), M, yd.data());
    kernels::linear_forward(l, Xo.data(), M, ys.data(), a);
    for (int64_t m = 0; m < M; ++m) {
      const bool same = std::equal(&yd[m * N], &yd[m * N] + N, &ys[m * N]);
      CHECK(same == (m != 5));
    }
  }
}

TEST_CASE("static KV range == dynamic quantizer for a token of that range; clips outside it") {
  std::vector<float> x = {-1.5f, 0.2f, 2.5f, -0.7f, 1.1f, 0.0f, -0.3f, 2.0f};
  for (int bits : {2, 4, 8}) {
    std::vector<float> d = x, s = x;
    kernels::fake_quantize_kv(d.data(), 8, bits);
    kernels::fake_quantize_kv_range(s.data(), 8, bits, -1.5f, 2.5f);
    CHECK(d == s);
    // A calibrated range wider than the token's: a coarser grid, so different values.
    std::vector<float> wide = x;
    kernels::fake_quantize_kv_range(wide.data(), 8, bits, -15.0f, 25.0f);
    CHECK(wide != d);
  }
  // Narrower than the token: its extremes clip to the range's ends.
  std::vector<float> n = x;
  kernels::fake_quantize_kv_range(n.data(), 8, 8, -1.0f, 1.0f);
  CHECK(n[2] == doctest::Approx(1.0f).epsilon(0.01));
  CHECK(n[0] == doctest::Approx(-1.0f).epsilon(0.01));
}
