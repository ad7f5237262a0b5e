// The integer GEMM of activation-quantized linears (kernels/int8_gemm.h): per-token quantization
// numerics by hand, oneDNN's s8 x s8 -> s32 path against the fp32 fake-quant reference on a sweep
// of shapes, and Linear's W4A4 path end to end.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/int8_gemm.h"
#include "kernels/linear.h"
#include "kernels/packed_matrix.h"
#include "quant/rtn.h"
#include "test_util.h"

using namespace ikv;

namespace {

std::vector<int8_t> random_codes(int64_t n, int bits, std::mt19937& rng) {
  const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<int8_t> q(n);
  for (auto& x : q) x = static_cast<int8_t>(d(rng));
  return q;
}

std::vector<float> random_scales(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(0.01f, 0.5f);
  std::vector<float> s(n);
  for (auto& x : s) x = d(rng);
  return s;
}

// max over elements of |Y − R| / Σ_k |x_k w_k|: the error relative to the size of the terms (a
// plain relative error would blow up where the terms cancel).
double term_relative_error(const std::vector<float>& Y, const std::vector<float>& R, const std::vector<int8_t>& xq,
                           const std::vector<float>& sx, const kernels::Int8Matrix& W, int64_t M) {
  const int64_t K = W.cols, N = W.rows;
  double worst = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double mag = 0;
      for (int64_t k = 0; k < K; ++k) mag += std::abs(double(xq[m * K + k]) * sx[m] * W.q[n * K + k] * W.scale[n]);
      if (mag > 0) worst = std::max(worst, std::abs(double(Y[m * N + n]) - R[m * N + n]) / mag);
    }
  return worst;
}

}  // namespace

TEST_CASE("per-token quantization: scale = clip·max|x|/7, round half to even, clamp to [-8, 7]") {
  const std::vector<float> x = {1.0f, -2.0f, 0.25f, 3.5f,    // s = 0.5: q = 2, -4, 0 (0.5 ties to 0), 7
                                0.0f, 0.0f, 0.0f, 0.0f,      // all zero: s = 1, q = 0
                                -3.5f, 1.0f, 0.75f, 1.25f};  // s = 0.5 again; clip 0.5 below
  std::vector<int8_t> q(12);
  std::vector<float> s(3);
  kernels::quantize_per_token(x.data(), 3, 4, 4, 1.0f, q.data(), s.data());
  CHECK(s[0] == 0.5f);
  CHECK(s[1] == 1.0f);
  CHECK(std::vector<int8_t>(q.begin(), q.begin() + 8) == std::vector<int8_t>{2, -4, 0, 7, 0, 0, 0, 0});
  CHECK(std::vector<int8_t>(q.begin() + 8, q.end()) == std::vector<int8_t>{-7, 2, 2, 2});  // 1.5 → 2, 2.5 → 2
  // Clip 0.5: s = 0.25; -3.5/s = -14 saturates at -8, 1.25/s = 5.
  kernels::quantize_per_token(x.data() + 8, 1, 4, 4, 0.5f, q.data(), s.data());
  CHECK(s[0] == 0.25f);
  CHECK(q[0] == -8);
  CHECK(q[3] == 5);
  // 8 bits: s = 0.5·3.5/127, -254 saturates at -128, 1.25/s = 90.7 → 91.
  kernels::quantize_per_token(x.data() + 8, 1, 4, 8, 0.5f, q.data(), s.data());
  CHECK(q[0] == -128);
  CHECK(q[3] == 91);
}

TEST_CASE("int8 GEMM == fake-quant reference on a sweep of shapes (M = 1 .. 300)") {
  std::mt19937 rng(7);
  for (auto [K, N] : std::vector<std::pair<int64_t, int64_t>>{{64, 32}, {100, 37}, {512, 256}, {512, 1408}, {1408, 512}}) {
    for (int bits : {4, 8}) {
      const kernels::Int8Matrix W = kernels::make_int8_matrix(random_codes(N * K, bits, rng), random_scales(N, rng), N, K);
      for (int64_t M : {1, 3, 17, 128, 300}) {
        CAPTURE(K);
        CAPTURE(N);
        CAPTURE(M);
        CAPTURE(bits);
        const std::vector<int8_t> xq = random_codes(M * K, bits, rng);
        const std::vector<float> sx = random_scales(M, rng);
        std::vector<float> Y(M * N), R(M * N);
        kernels::int8_gemm(xq.data(), sx.data(), M, W, Y.data());
        kernels::int8_gemm_reference(xq.data(), sx.data(), M, W, R.data());
        CHECK(term_relative_error(Y, R, xq, sx, W, M) < 1e-6);
      }
    }
  }
}

TEST_CASE("int8 weights from a packed symmetric per-channel matrix: the same values; other formats refused") {
  const int64_t N = 48, K = 160;
  const std::vector<float> w = test::gaussian(N * K, 3);
  const kernels::PackedMatrix P = quant::quantize_rtn(w.data(), N, K, {4, -1, true}, "w");
  const kernels::Int8Matrix I = kernels::int8_from_packed(P);
  std::vector<float> deq(N * K);
  kernels::dequantize(P, deq.data());
  bool same = true, in_range = true;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      same &= static_cast<float>(I.q[n * K + k]) * I.scale[n] == deq[n * K + k];
      in_range &= I.q[n * K + k] >= -8 && I.q[n * K + k] <= 7;
    }
  CHECK(same);
  CHECK(in_range);
  CHECK_THROWS_WITH(kernels::int8_from_packed(quant::quantize_rtn(w.data(), N, K, {4, 32, true}, "w")),
                    doctest::Contains("symmetric per-channel"));
  CHECK_THROWS_WITH(kernels::int8_from_packed(quant::quantize_rtn(w.data(), N, K, {4, -1, false}, "w")),
                    doctest::Contains("symmetric per-channel"));
}

TEST_CASE("Linear W4A4: int8 GEMM path == fake-quantized X times dequantized W; dense A4 path the same") {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  const int64_t N = 96, K = 256;
  const std::vector<float> w = test::gaussian(N * K, 11);
  kernels::Linear packed;
  packed.out = N, packed.in = K;
  kernels::set_packed(packed, std::make_shared<kernels::PackedMatrix>(quant::quantize_rtn(w.data(), N, K, {4, -1, true}, "w")));
  kernels::set_act_quant(packed, 4, 0.9f);
  REQUIRE(std::get<kernels::Packed>(packed.weight).int8);  // symmetric per-channel: the integer GEMM
  // The dequantized weight, A4 by fake quantization.
  kernels::Linear dense = kernels::make_dense(kernels::linear_dense_weight(packed), N, K);
  kernels::set_act_quant(dense, 4, 0.9f);
  for (int64_t M : {1, 5, 64}) {
    CAPTURE(M);
    std::vector<float> X(M * K);
    for (auto& x : X) x = nd(rng);
    X[3] = 40.0f;  // an outlier: the clip saturates it
    std::vector<int8_t> xq(M * K);
    std::vector<float> sx(M), xf(M * K), R(M * N), Y(M * N), Yd(M * N);
    kernels::quantize_per_token(X.data(), M, K, 4, 0.9f, xq.data(), sx.data());
    kernels::dequantize_per_token(xq.data(), sx.data(), M, K, xf.data());
    kernels::gemm_reference(xf.data(), M, K, kernels::dense_f32_weight(dense).data(), N, R.data());
    kernels::linear_forward(packed, X.data(), M, Y.data());
    kernels::linear_forward(dense, X.data(), M, Yd.data());
    double err = 0, errd = 0, ref = 0;
    for (int64_t i = 0; i < M * N; ++i) {
      err = std::max(err, double(std::abs(Y[i] - R[i])));
      errd = std::max(errd, double(std::abs(Yd[i] - R[i])));
      ref = std::max(ref, double(std::abs(R[i])));
    }
    CHECK(err / ref < 1e-6);
    CHECK(errd / ref < 1e-5);  // fp32 GEMM accumulation order
  }
}
