// Held-out weights beside packed codes (kernels::HeldOutWeight, RTN's super weights): the layer
// computes with the exact value, and the dequantized weight holds it bit for bit.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "io/error.h"
#include "kernels/gemm.h"
#include "kernels/linear.h"
#include "quant/rtn.h"
#include "test_util.h"

using namespace ikv;

TEST_CASE("a held-out weight is exact in the dequantized weight and in the product") {
  const int64_t N = 16, K = 256, M = 5;
  std::vector<float> w = test::gaussian(N * K, 1, 0.02f);
  w[3 * K + 77] = 1.7f;  // a super weight
  kernels::Linear l = kernels::make_dense(w, N, K);
  const kernels::QuantSpec spec{3, 128, false};
  kernels::set_packed(l, std::make_shared<kernels::PackedMatrix>(quant::quantize_rtn(w.data(), N, K, spec, "t")));
  CHECK(kernels::linear_dense_weight(l)[3 * K + 77] != 1.7f);
  kernels::hold_out_weight(l, 3, 77, 1.7f);
  const std::vector<float> dq = kernels::linear_dense_weight(l);
  CHECK(dq[3 * K + 77] == 1.7f);
  // The product equals the reference GEMM on that weight (the codes elsewhere, 1.7 at [3, 77]).
  const std::vector<float> X = test::gaussian(M * K, 2);
  std::vector<float> Y(M * N), R(M * N);
  kernels::linear_forward(l, X.data(), M, Y.data());
  kernels::gemm_reference(X.data(), M, K, dq.data(), N, R.data());
  for (int64_t i = 0; i < M * N; ++i) CHECK(Y[i] == doctest::Approx(R[i]).epsilon(1e-5));
  // Holding the same entry again replaces it; new codes drop it.
  kernels::hold_out_weight(l, 3, 77, -0.5f);
  CHECK(l.held_out.size() == 1);
  CHECK(kernels::linear_dense_weight(l)[3 * K + 77] == -0.5f);
  kernels::set_packed(l, std::make_shared<kernels::PackedMatrix>(quant::quantize_rtn(w.data(), N, K, spec, "t")));
  CHECK(l.held_out.empty());
  CHECK_THROWS_AS(kernels::hold_out_weight(l, N, 0, 1.0f), Error);
  kernels::Linear dense = kernels::make_dense(w, N, K);
  CHECK_THROWS_AS(kernels::hold_out_weight(dense, 0, 0, 1.0f), Error);
}
