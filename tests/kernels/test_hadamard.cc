// Hadamard-based orthogonal transforms: the constructions for every size class, orthogonality, ±1
// entries where a Hadamard matrix is used, and the fast transform against its dense twin.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "test_util.h"
#include "kernels/hadamard.h"

using ikv::kernels::HadamardTransform;
using ikv::kernels::make_hadamard;

namespace {

using ikv::test::gaussian;

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// max |T Tᵀ − I| of the dense matrix.
double orthogonality_error(const HadamardTransform& h) {
  const std::vector<double> t = ikv::kernels::hadamard_dense(h);
  const int64_t n = h.n;
  double err = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) s += t[i * n + k] * t[j * n + k];
      err = std::max(err, std::abs(s - (i == j ? 1.0 : 0.0)));
    }
  return err;
}

}  // namespace

TEST_CASE("hadamard constructions: Sylvester, Paley I x Sylvester, random orthogonal x Sylvester") {
  CHECK(make_hadamard(512).construction == "sylvester(512)");
  CHECK(make_hadamard(64).construction == "sylvester(64)");
  CHECK(make_hadamard(1408).construction == "paley(44) x sylvester(32)");  // testbed-26M's hidden size
  CHECK(make_hadamard(11008).construction == "random-orthogonal(43) x sylvester(256)");  // LLaMA-7B's
  CHECK(make_hadamard(5120).construction == "paley(20) x sylvester(256)");   // LLaMA-13B's dim
  CHECK(make_hadamard(13824).construction == "paley(108) x sylvester(128)");  // LLaMA-13B's hidden
  CHECK(make_hadamard(12).construction == "paley(12)");
  CHECK(make_hadamard(6).construction == "random-orthogonal(3) x sylvester(2)");
  CHECK(make_hadamard(7).construction == "random-orthogonal(7)");
  const HadamardTransform s = make_hadamard(512, 7, true);
  CHECK(s.construction == "sylvester(512) with random signs (seed 7)");
  int negative = 0;
  for (float x : s.signs) negative += x < 0;
  CHECK(negative > 200);
  CHECK(negative < 312);
}

TEST_CASE("hadamard: orthogonal for every construction; ±1/√n entries where a Hadamard matrix is used") {
  for (int64_t n : {1, 2, 4, 6, 7, 12, 20, 24, 40, 44, 64, 88, 96, 176}) {
    for (bool signs : {false, true}) {
      CAPTURE(n);
      CAPTURE(signs);
      const HadamardTransform h = make_hadamard(n, 3, signs);
      CHECK(orthogonality_error(h) < 1e-6);
      if (h.construction.find("random-orthogonal") != std::string::npos) continue;
      const std::vector<double> t = ikv::kernels::hadamard_dense(h);
      double worst = 0;
      for (double v : t) worst = std::max(worst, std::abs(std::abs(v) * std::sqrt(static_cast<double>(n)) - 1.0));
      CHECK(worst < 1e-6);
    }
  }
}

TEST_CASE("hadamard: fast transform equals the dense twin; inverse undoes it; double agrees") {
  for (int64_t n : {1, 2, 8, 12, 24, 64, 88, 176, 352, 512, 1408}) {
    CAPTURE(n);
    const HadamardTransform h = make_hadamard(n, 11, true);
    const int64_t rows = 5;
    const std::vector<float> x = gaussian(rows * n, static_cast<uint32_t>(n));
    std::vector<float> fast = x, ref = x;
    ikv::kernels::hadamard_rows(h, fast.data(), rows);
    ikv::kernels::hadamard_rows_reference(h, ref.data(), rows);
    CHECK(max_abs_diff(fast, ref) < 2e-5);
    // Norm preserved (orthogonal), the inverse restores the input.
    double nx = 0, ny = 0;
    for (int64_t i = 0; i < rows * n; ++i) nx += double(x[i]) * x[i], ny += double(fast[i]) * fast[i];
    CHECK(std::abs(ny / nx - 1) < 1e-5);
    std::vector<float> back = fast;
    ikv::kernels::hadamard_rows_inverse(h, back.data(), rows);
    CHECK(max_abs_diff(back, x) < 2e-5);
    std::vector<double> xd(x.begin(), x.end());
    ikv::kernels::hadamard_rows(h, xd.data(), rows);
    double worst = 0;
    for (size_t i = 0; i < xd.size(); ++i) worst = std::max(worst, std::abs(xd[i] - ref[i]));
    CHECK(worst < 2e-5);
  }
}

TEST_CASE("hadamard: the same seed gives the same transform; another seed another one") {
  const HadamardTransform a = make_hadamard(11008, 5, true), b = make_hadamard(11008, 5, true);
  const HadamardTransform c = make_hadamard(11008, 6, true);
  CHECK(a.block_matrix == b.block_matrix);
  CHECK(a.signs == b.signs);
  CHECK(a.block_matrix != c.block_matrix);
  CHECK(a.signs != c.signs);
}

TEST_CASE("hadamard: an outlier is spread over every coordinate") {
  // What QuaRot relies on: a one-hot input becomes a row of T, whose entries are all ±1/√n.
  const HadamardTransform h = make_hadamard(1408, 0, true);
  std::vector<float> x(1408, 0.0f);
  x[10] = 454.0f;  // testbed-26M's massive activation at <bos>
  ikv::kernels::hadamard_rows(h, x.data(), 1);
  float mx = 0;
  for (float v : x) mx = std::max(mx, std::abs(v));
  CHECK(mx == doctest::Approx(454.0 / std::sqrt(1408.0)).epsilon(1e-4));
}
