// Dense weights on 16-bit storage (kernels/half_matrix.h, gemm_f32_half, Linear's DenseHalf):
// the upcast is exact for every bit pattern, fp32 compute on the stored weight is bit for bit
// gemm_f32 on the upcast weight (what loading the checkpoint as fp32 computed), and both are within
// rounding of the reference twin (double accumulation).
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "io/dtype.h"
#include "io/error.h"
#include "kernels/gemm.h"
#include "kernels/half_matrix.h"
#include "kernels/linear.h"
#include "kernels/packed_matrix.h"
#include "quant/rtn.h"
#include "test_util.h"

using namespace ikv;
using kernels::Half;

namespace {

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A [n, k] matrix in 16-bit storage with values ~N(0, sd²) (some exactly representable only there).
std::vector<uint16_t> half_values(Half type, int64_t count, uint32_t seed, float sd) {
  std::vector<uint16_t> h(static_cast<size_t>(count));
  const std::vector<float> g = test::gaussian(h.size(), seed, sd);
  for (size_t i = 0; i < h.size(); ++i) h[i] = type == Half::kBf16 ? io::fp32_to_bf16(g[i]) : io::fp32_to_fp16(g[i]);
  return h;
}

struct Threads {
  int saved = omp_get_max_threads();
  explicit Threads(int n) { omp_set_num_threads(n); }
  ~Threads() { omp_set_num_threads(saved); }
};

}  // namespace

TEST_CASE("16-bit to fp32 is exact for all 65536 patterns of bf16 and fp16") {
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> bf(all.size()), f16(all.size()), bf_ref(all.size()), f16_ref(all.size());
  kernels::half_to_f32(Half::kBf16, all.data(), 65536, bf.data());
  kernels::half_to_f32(Half::kF16, all.data(), 65536, f16.data());
  for (size_t i = 0; i < all.size(); ++i) bf_ref[i] = io::bf16_to_fp32(all[i]), f16_ref[i] = io::fp16_to_fp32(all[i]);
  CHECK(same_bits(bf, bf_ref));
  CHECK(same_bits(f16, f16_ref));
  // An odd count takes the scalar tail.
  std::vector<float> tail(13);
  kernels::half_to_f32(Half::kF16, all.data() + 15360, 13, tail.data());
  CHECK(same_bits(tail, std::vector<float>(f16_ref.begin() + 15360, f16_ref.begin() + 15373)));
  // To bf16: bf16 copied, fp16 rounded to nearest even through its exact fp32 value.
  std::vector<uint16_t> to(all.size());
  kernels::half_to_bf16(Half::kF16, all.data(), 65536, to.data());
  int wrong = 0;
  for (size_t i = 0; i < all.size(); ++i) wrong += to[i] != io::fp32_to_bf16(f16_ref[i]);
  CHECK(wrong == 0);
}

TEST_CASE("gemm_f32_half == gemm_f32 on the upcast weight, bit for bit, and near the reference") {
  std::mt19937 rng(5);
  struct Shape {
    int64_t M, K, N;
  };
  // One panel and many, a short last panel, runtime-M and exact-M oneDNN primitives, K from a
  // 16-row panel (K = 16384) to a 512-row one.
  const Shape shapes[] = {{1, 512, 1408},  {3, 1408, 512},  {7, 64, 100},    {24, 4096, 1000},
                          {127, 512, 700}, {128, 512, 1408}, {300, 1024, 260}, {2, 16384, 40},
                          {1, 4096, 1000}, {16, 4096, 300}, {64, 11008, 200}};
  for (int threads : {1, 2}) {
    Threads t(threads);
    for (const Shape& s : shapes)
      for (Half type : {Half::kBf16, Half::kF16}) {
        CAPTURE(threads);
        CAPTURE(s.M);
        CAPTURE(s.K);
        CAPTURE(s.N);
        CAPTURE(type == Half::kBf16 ? "bf16" : "fp16");
        const std::vector<uint16_t> w = half_values(type, s.N * s.K, rng(), 0.05f);
        const std::vector<float> up = kernels::half_to_f32(type, w.data(), s.N * s.K);
        const std::vector<float> X = test::gaussian(s.M * s.K, rng());
        std::vector<float> Y(s.M * s.N), F(s.M * s.N), R(s.M * s.N);
        kernels::gemm_f32_half(X.data(), s.M, s.K, w.data(), type, s.N, Y.data());
        kernels::gemm_f32(X.data(), s.M, s.K, up.data(), s.N, F.data());
        CHECK(same_bits(Y, F));
        kernels::gemm_reference(X.data(), s.M, s.K, up.data(), s.N, R.data());
        double worst = 0;
        for (int64_t m = 0; m < s.M; ++m)
          for (int64_t n = 0; n < s.N; ++n) {
            double bound = 0;  // 4 sqrt(K) u Σ|x w|, the packed_matmul tests' fp32 summation bound
            for (int64_t k = 0; k < s.K; ++k) bound += std::fabs(double(X[m * s.K + k]) * up[n * s.K + k]);
            bound *= 4 * std::sqrt(double(s.K)) * std::ldexp(1.0, -24);
            worst = std::max(worst, std::fabs(Y[m * s.N + n] - double(R[m * s.N + n])) / bound);
          }
        CHECK(worst <= 1.0);
      }
  }
}

TEST_CASE("a DenseHalf linear: fp32 compute as upcast, bf16 compute in place, expansion for editing") {
  const int64_t N = 300, K = 256, M = 9;
  const std::vector<float> X = test::gaussian(M * K, 1);
  for (Half type : {Half::kBf16, Half::kF16}) {
    auto storage = std::make_shared<std::vector<uint16_t>>(half_values(type, N * K, 2, 0.1f));
    const kernels::HalfMatrix hm{type, storage->data(), storage};
    kernels::Linear h = kernels::make_dense_half(hm, N, K);
    h.bias = test::gaussian(N, 3);
    kernels::Linear d = kernels::make_dense(kernels::half_to_f32(type, storage->data(), N * K), N, K);
    d.bias = h.bias;
    CHECK(kernels::linear_dense_weight(h) == kernels::dense_f32_weight(d));
    std::vector<float> yh(M * N), yd(M * N);
    kernels::linear_forward(h, X.data(), M, yh.data());
    kernels::linear_forward(d, X.data(), M, yd.data());
    CHECK(same_bits(yh, yd));
    // Activation quantization applies before the product, as for every form.
    kernels::set_act_quant(h, 4, 1.0f), kernels::set_act_quant(d, 4, 1.0f);
    kernels::linear_forward(h, X.data(), M, yh.data());
    kernels::linear_forward(d, X.data(), M, yd.data());
    CHECK(same_bits(yh, yd));
    kernels::set_act_quant(h, 16, 1.0f), kernels::set_act_quant(d, 16, 1.0f);

    // bf16 compute: a bf16 weight is used where it is stored; fp16 is converted once, to the bf16
    // an fp32 weight converts to, so both give what the fp32-loaded model gave.
    kernels::Linear hb = h;
    kernels::to_bf16(hb);
    kernels::to_bf16(d);
    const auto& b = std::get<kernels::DenseHalf>(hb.weight);
    CHECK(b.compute == kernels::Activations::kBf16);
    CHECK(b.w.type == Half::kBf16);
    CHECK((b.w.data == storage->data()) == (type == Half::kBf16));
    kernels::linear_forward(hb, X.data(), M, yh.data());
    kernels::linear_forward(d, X.data(), M, yd.data());
    CHECK(same_bits(yh, yd));

    // Expanded for editing: fp32 values of the stored weight; the view is let go.
    const long holders = storage.use_count();
    std::vector<float>& e = kernels::expand_to_f32(h);
    CHECK(e == kernels::half_to_f32(type, storage->data(), N * K));
    CHECK(storage.use_count() == holders - 1);
    CHECK(std::holds_alternative<kernels::DenseF32>(h.weight));
  }
  kernels::Linear p = kernels::make_dense(test::gaussian(N * K, 4), N, K);
  kernels::set_packed(p, std::make_shared<kernels::PackedMatrix>(quant::quantize_rtn(
                             kernels::linear_dense_weight(p).data(), N, K, {4, 128, false}, "p")));
  CHECK_THROWS_WITH_AS(kernels::expand_to_f32(p), doctest::Contains("is not a dense fp32 weight"), Error);
}
