// packed_matmul against its reference twin on a sweep of shapes, formats and code paths.
//
// Tolerance. The reference accumulates in double, so its error is negligible; the kernels sum K
// products in fp32, in an order that depends on the path (16-lane partial sums, per-group sums
// scaled afterwards with the zero point folded out: s·(Σqx − zΣx), or oneDNN's blocking on
// dequantized panels). Every partial sum of every one of those orders is bounded by
//   S = Σ_k |x_k| · s_g(k) · (q_k + z_g(k))   (>= Σ |x_k w'_k|),
// and rounding errors of a length-K fp32 summation grow like sqrt(K)·u with high probability
// (Higham & Mary, "A new approach to probabilistic rounding error analysis", 2019). We allow
//   |y - y_ref| <= 4 · sqrt(K) · u · S,   u = 2^-24,
// which a single wrong code (error s·|x_k|, about S / (K · 2^(b-1)) on average) exceeds for the
// K used here, so decoding mistakes cannot hide in it.
//
// With bf16 activations both sides see x̂ = bf16(x); the fast kernel sums (1 + q/c_k)·c_k·x̂ and
// subtracts Σ z·x̂ + Σ c_k·x̂ per group, c_k a power of two per column (bf16_gemv_code_base;
// packed_gemv_bf16_avx512.cc), so its partial sums are bounded by S with q + z replaced by
// q + z + 2·c_k. Not rounding X, or rounding it differently, errs by ~2^-9·S, far outside the
// tolerance.
//
// With q8 activations both sides see x̂ = q8(x) (S is taken over |x̂|); the tiled q8 kernel's per-unit
// integer sums are exact and it rounds only when scaling and adding them (q8_tiles_avx512.cc),
// inside the same bound. Rounding X differently errs by up to max|x| / 254 per element.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"
#include "kernels/cpu.h"
#include "kernels/int8_gemm.h"
#include "kernels/packed_matmul.h"
#include "kernels/q8_tiles.h"
#include "kernels/packed_matrix.h"
#include "quant/rtn.h"

using ikv::kernels::Activations;
using ikv::kernels::Isa;
using ikv::kernels::PackedMatrix;
using ikv::kernels::QuantSpec;

namespace {

using ikv::test::gaussian;

// S[m, n] of the tolerance above (extra(k) is added to column k's q + z).
std::vector<double> magnitude(const PackedMatrix& W, const std::vector<float>& X, int64_t M,
                              const std::function<int(int64_t)>& extra) {
  const int64_t K = W.cols, N = W.rows;
  std::vector<int32_t> q(N * K);
  ikv::kernels::unpack_codes(W, q.data());
  const int offset = W.sym ? 1 << (W.bits - 1) : 0;
  std::vector<double> S(M * N, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = k / W.group;
      const double t = ikv::kernels::scale_value(W, n, g) * (q[n * K + k] + offset + ikv::kernels::zero_point(W, n, g) + extra(k));
      for (int64_t m = 0; m < M; ++m) S[m * N + n] += std::fabs(X[m * K + k]) * t;
    }
  return S;
}

double g_worst_ratio = 0;  // largest err/tol seen, reported so the margin stays visible

// Checks a kernel's output y = X·W'ᵀ (X rounded as act says) against the reference; `based`: the
// bf16 GEMV's sums carry its code bases (see above); `path` names the kernel in failures.
void check_output(const PackedMatrix& W, const std::vector<float>& X, int64_t M, const std::vector<float>& y,
                  Activations act, bool based, const std::string& path) {
  const int64_t K = W.cols, N = W.rows;
  std::vector<float> ref(M * N);
  ikv::kernels::packed_matmul_reference(W, X.data(), M, ref.data(), act);
  const auto S = magnitude(W, act == Activations::kQ8 ? ikv::kernels::rounded_activations(X.data(), M, K, act) : X, M, [&](int64_t k) {
    return based ? 2 * ikv::kernels::detail::bf16_gemv_code_base(W.bits, k) : 0;
  });
  const double tol_factor = 4.0 * std::sqrt(static_cast<double>(K)) * std::ldexp(1.0, -24);
  int64_t bad = 0;
  double worst = 0;
  for (int64_t i = 0; i < M * N; ++i) {
    const double err = std::fabs(static_cast<double>(y[i]) - ref[i]);
    const double tol = tol_factor * S[i] + 1e-30;
    bad += !(err <= tol);  // NaN counts as bad
    worst = std::max(worst, err / tol);
  }
  g_worst_ratio = std::max(g_worst_ratio, worst);
  std::ostringstream what;
  what << "bits " << W.bits << (W.sym ? " sym" : " asym") << " group " << W.group << " M " << M
       << " N " << N << " K " << K << " " << path
       << (act == Activations::kBf16 ? " bf16 activations" : act == Activations::kQ8 ? " q8 activations" : "")
       << ": worst err/tol " << worst;
  INFO(what.str());
  CHECK(bad == 0);
}

// Runs packed_matmul on the given path and checks every output against the reference.
void check_against_reference(const PackedMatrix& W, int64_t M, Isa isa, uint32_t seed,
                             Activations act = Activations::kFp32) {
  const auto X = gaussian(M * W.cols, seed);
  std::vector<float> y(M * W.rows, NAN);
  ikv::kernels::packed_matmul(W, X.data(), M, y.data(), isa, act);
  const bool based = act == Activations::kBf16 && M < ikv::kernels::kPanelMinRows &&
                     isa != Isa::kPortable && ikv::kernels::detail::avx512_bf16_gemv_covers(W);
  check_output(W, X, M, y, act, based, isa == Isa::kAvx512 ? "avx512" : "portable");
}

// The same for q8_tiles_matmul on W's tiles.
void check_q8_tiles(const PackedMatrix& W, const ikv::kernels::Q8Tiles& T, int64_t M, uint32_t seed) {
  const auto X = gaussian(M * W.cols, seed);
  std::vector<float> y(M * W.rows, NAN);
  ikv::kernels::q8_tiles_matmul(T, X.data(), M, y.data());
  check_output(W, X, M, y, Activations::kQ8, false, "q8 tiles");
}

PackedMatrix random_packed(int64_t N, int64_t K, const QuantSpec& spec, uint32_t seed) {
  const auto w = gaussian(N * K, seed, 0.05f);
  return ikv::quant::quantize_rtn(w.data(), N, K, spec, "test.weight");
}

std::vector<Isa> paths() {
  std::vector<Isa> p = {Isa::kPortable};
  if (ikv::kernels::cpu_has_avx512()) p.push_back(Isa::kAvx512);
  else MESSAGE("no AVX-512 on this CPU: only the portable path is tested");
  return p;
}

// Group sizes for a width: per-channel, the multiples of 16 that divide it, and one awkward size.
std::vector<int> groups_for(int64_t K) {
  std::vector<int> g = {-1};
  for (int s : {16, 32, 64, 128})
    if (K % s == 0) g.push_back(s);
  for (int s : {4, 8, 12})
    if (K % s == 0) {
      g.push_back(s);
      break;
    }
  return g;
}

}  // namespace

TEST_CASE("packed_matmul W3/W4 matches the reference on both paths across shapes") {
  const int64_t Ms[] = {1, 2, 3, 7, 16, 17, 64, 130};
  const int64_t Ns[] = {1, 5, 64, 67, 300};
  const int64_t Ks[] = {8, 64, 128, 136, 172, 256, 384};
  uint32_t counter = 0;
  for (int64_t K : Ks)
    for (int group : groups_for(K))
      for (int bits : {3, 4})
        for (bool sym : {false, true}) {
          // Cycle M and N so every value meets every K; always one small-M and one panel-sized M.
          const int64_t N = Ns[counter % 5];
          const int64_t M_small = Ms[counter % 6];               // 1 .. 17: register decode
          const int64_t M_large = Ms[6 + counter % 2];           // 64, 130: dequantized panels
          ++counter;
          const PackedMatrix W = random_packed(N, K, {bits, group, sym}, counter);
          for (Isa isa : paths()) {
            check_against_reference(W, M_small, isa, counter * 7);
            check_against_reference(W, M_large, isa, counter * 13);
          }
        }
  MESSAGE("largest error / tolerance over the sweep: " << g_worst_ratio);
}

TEST_CASE("packed_matmul: every M on a fixed W4 g128 and W3 g128 matrix") {
  for (int bits : {3, 4}) {
    const PackedMatrix W = random_packed(67, 384, {bits, 128, false}, 99);
    for (int64_t M : {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 24, 25, 64, 130})
      for (Isa isa : paths()) check_against_reference(W, M, isa, static_cast<uint32_t>(M));
  }
}

TEST_CASE("packed_matmul with bf16 activations equals bf16(X)·W' on every path") {
  // The vdpbf16ps GEMV takes M < kPanelMinRows on W4 groups of 128k and W3 groups of 64k columns or
  // per-channel; other formats and larger M round X and take the fp32 kernels. Both must give
  // bf16(X)·W'.
  uint32_t seed = 0;
  for (int bits : {3, 4})
    for (int64_t K : {128, 136, 172, 384, 512})
      for (int group : {-1, 16, 32, 64, 128, 256}) {
        if (group > 0 && K % group != 0) continue;
        const PackedMatrix W = random_packed(37, K, {bits, group, ++seed % 3 == 0}, seed);
        const bool fast = ikv::kernels::detail::avx512_bf16_gemv_covers(W);
        if (ikv::kernels::cpu_has_avx512_bf16() && ikv::kernels::cpu_has_avx512_vbmi())
          CHECK(fast == (group == -1 || group % (bits == 4 ? 128 : 64) == 0));
        for (int64_t M : {1, 2, 3, 4, 5, 9, 23, 24})
          for (Isa isa : paths()) check_against_reference(W, M, isa, seed * 31 + M, Activations::kBf16);
      }
  if (!ikv::kernels::cpu_has_avx512_bf16() || !ikv::kernels::cpu_has_avx512_vbmi())
    MESSAGE("no AVX512_BF16 + VBMI + VBMI2 on this CPU: the vdpbf16ps GEMV is not exercised");
  MESSAGE("largest error / tolerance so far: " << g_worst_ratio);
}

TEST_CASE("quantize_q8 is quantize_per_token on each 128-column block, the tail zero-padded") {
  const int64_t M = 2, K = 300, B = ikv::kernels::kQ8Block, blocks = 3;
  auto X = gaussian(M * K, 5);
  for (int64_t k = 128; k < 256; ++k) X[K + k] = 0.0f;  // an all-zero block: scale 1, codes 0
  X[7] = 40.0f;                                         // an outlier rules only its own block
  std::vector<int8_t> q(M * blocks * B);
  std::vector<float> s(M * blocks);
  ikv::kernels::quantize_q8(X.data(), M, K, q.data(), s.data());
  for (int64_t m = 0; m < M; ++m)
    for (int64_t b = 0; b < blocks; ++b) {
      std::vector<float> block(B, 0.0f);
      for (int64_t k = b * B; k < std::min(K, (b + 1) * B); ++k) block[k - b * B] = X[m * K + k];
      std::vector<int8_t> q_ref(B);
      float s_ref = 0;
      ikv::kernels::quantize_per_token(block.data(), 1, B, 8, 1.0f, q_ref.data(), &s_ref);
      CHECK(s[m * blocks + b] == s_ref);
      CHECK(std::equal(q_ref.begin(), q_ref.end(), q.begin() + (m * blocks + b) * B));
    }
  CHECK(s[0] == doctest::Approx(40.0 / 127));
  CHECK(s[1] < 0.1f);
  CHECK(s[blocks + 1] == 1.0f);
  CHECK(q[2 * B + 300 - 256] == 0);  // padding past K
}

TEST_CASE("packed_matmul with q8 activations equals q8(X)·W' on every path") {
  // packed_matmul rounds X (the fast q8 kernel runs on Q8Tiles, tested below) and takes the fp32
  // kernels: GEMV, small-M and panel GEMM, on AVX-512 formats and others.
  uint32_t seed = 1000;
  for (int bits : {3, 4})
    for (int64_t K : {136, 384})
      for (int group : {-1, 8, 128}) {
        if (group > 0 && K % group != 0) continue;
        const PackedMatrix W = random_packed(37, K, {bits, group, ++seed % 3 == 0}, seed);
        for (int64_t M : {1, 5, 24})
          for (Isa isa : paths()) check_against_reference(W, M, isa, seed * 31 + M, Activations::kQ8);
      }
}

TEST_CASE("Q8Tiles hold W's codes, scales and zero points; q8_tiles_matmul equals q8(X)·W'") {
  // Tiles of 16 rows (N = 5, 16, 37: partial, whole, and a tail), units of 128 columns (K = 136 and
  // 172 per-channel leave a padded unit), groups of 128k or per-channel, M = 1..23 and 64 (1-4
  // rows of x per pass, up to 16 passes over a tile).
  if (!ikv::kernels::q8_tiles_runs_here()) MESSAGE("no AVX512_VNNI on this CPU: q8_tiles_matmul is not run");
  uint32_t seed = 3000;
  for (int bits : {3, 4})
    for (int64_t N : {5, 16, 37})
      for (int64_t K : {128, 136, 172, 384, 640})
        for (int group : {-1, 128, 256}) {
          if (group > 0 && K % group != 0) continue;
          const PackedMatrix W = random_packed(N, K, {bits, group, ++seed % 3 == 0}, seed);
          REQUIRE(ikv::kernels::q8_tiles_cover(W));
          const ikv::kernels::Q8Tiles T = ikv::kernels::tile_for_q8(W);
          std::vector<int32_t> q(N * K);
          ikv::kernels::unpack_codes(W, q.data());
          const int offset = W.sym ? 1 << (bits - 1) : 0;
          int64_t wrong = 0;
          for (int64_t n = 0; n < N; ++n) {
            for (int64_t k = 0; k < K; ++k) wrong += ikv::kernels::q8_tile_code(T, n, k) != q[n * K + k] + offset;
            for (int64_t g = 0; g < W.groups_per_row(); ++g) {
              const int64_t f = (n / 16) * W.groups_per_row() + g;
              wrong += T.scales[16 * f + n % 16] != W.scales[n * W.groups_per_row() + g];
              wrong += ((T.zeros[8 * f + n % 8] >> (4 * (n % 16 / 8))) & 0xF) != ikv::kernels::zero_point(W, n, g);
            }
          }
          INFO("bits " << bits << " N " << N << " K " << K << " group " << group);
          CHECK(wrong == 0);
          // The tiles are the only copy under q8: untiling gives W back byte for byte.
          const PackedMatrix U = ikv::kernels::untile_q8(T);
          CHECK((U.rows == W.rows && U.cols == W.cols && U.bits == W.bits && U.group == W.group && U.sym == W.sym));
          CHECK((U.scales == W.scales && U.zeros == W.zeros));
          CHECK(U.codes.size() == W.codes.size());
          CHECK(std::memcmp(U.codes.data(), W.codes.data(), W.codes.size() * sizeof(W.codes[0])) == 0);
          if (ikv::kernels::q8_tiles_runs_here())
            for (int64_t M : {1, 2, 3, 4, 5, 9, 23, 64}) check_q8_tiles(W, T, M, seed * 31 + static_cast<uint32_t>(M));
        }
  const PackedMatrix w16 = random_packed(8, 256, {4, 64, false}, 1);
  CHECK_FALSE(ikv::kernels::q8_tiles_cover(w16));
  CHECK_THROWS_WITH(ikv::kernels::tile_for_q8(w16), doctest::Contains("groups of 128k columns"));
  MESSAGE("largest error / tolerance so far: " << g_worst_ratio);
}

TEST_CASE("M <= 4 GEMVs: every group-flush schedule (in-block, per block, multi-block, run-time)") {
  // K = 3072 takes groups that end inside a block (48, 96, 128), at every block (W4 128, W3 512),
  // every few blocks (256, 1024) or only at the row's end (-1), for both decoders of both widths.
  uint32_t seed = 500;
  for (int bits : {3, 4})
    for (int group : {48, 96, 128, 256, 512, 1024, -1}) {
      const PackedMatrix W = random_packed(13, 3072, {bits, group, false}, ++seed);
      for (int64_t M : {1, 2, 4})
        for (Activations act : {Activations::kFp32, Activations::kBf16, Activations::kQ8})
          check_against_reference(W, M, Isa::kAuto, seed + static_cast<uint32_t>(M), act);
    }
}

TEST_CASE("packed_matmul bits 2..8 (portable decoder) matches the reference") {
  for (int bits = 2; bits <= 8; ++bits)
    for (bool sym : {false, true})
      for (int group : {-1, 8, 64}) {
        const PackedMatrix W = random_packed(67, 192, {bits, group, sym}, bits * 10 + group);
        for (int64_t M : {1, 3, 17, 40})
          for (Isa isa : paths()) check_against_reference(W, M, isa, static_cast<uint32_t>(M + bits));
      }
}

TEST_CASE("AVX-512 panel dequantization is bit-identical to kernels::dequantize") {
  if (!ikv::kernels::cpu_has_avx512()) return;
  for (int bits : {3, 4})
    for (bool sym : {false, true})
      for (int64_t K : {64, 172, 512, 1040, 11008 / 8})
        for (int group : {-1, 16, 64}) {
          if (group > 0 && K % group != 0) continue;
          const PackedMatrix W = random_packed(5, K, {bits, group, sym}, 5);
          REQUIRE(ikv::kernels::detail::avx512_decodes(W));
          std::vector<float> ref(5 * K), fast(5 * (K + 3), -1.0f);
          ikv::kernels::dequantize(W, ref.data());
          ikv::kernels::detail::dequantize_rows_avx512(W, 0, 5, fast.data(), K + 3);
          bool same = true;
          for (int64_t n = 0; n < 5; ++n) {
            for (int64_t k = 0; k < K; ++k) same &= fast[n * (K + 3) + k] == ref[n * K + k];
            for (int64_t k = K; k < K + 3; ++k) same &= fast[n * (K + 3) + k] == -1.0f;  // untouched
          }
          CAPTURE(bits);
          CAPTURE(K);
          CAPTURE(group);
          CHECK(same);
        }
}

TEST_CASE("AVX-512 blocked panels (oneDNN's BA16a64b and kin) hold the dequantized weights") {
  if (!ikv::kernels::cpu_has_avx512()) return;
  for (int bits : {3, 4})
    for (int64_t K : {64, 172, 512, 1040})
      for (int64_t rows : {5, 16, 37, 64})
        for (int64_t nb : {16, 64}) {
          const int64_t Kp = (K + 15) / 16 * 16, Np = (rows + nb - 1) / nb * nb;
          const ikv::kernels::detail::PanelLayout lay{16, nb, 16 * nb, Kp * nb};
          const PackedMatrix W = random_packed(rows + 3, K, {bits, K % 64 ? -1 : 64, false}, 17);
          std::vector<float> ref((rows + 3) * K);
          ikv::kernels::dequantize(W, ref.data());
          // 64-byte aligned buffer, prefilled with garbage that must all be overwritten.
          std::unique_ptr<float, decltype(&std::free)> storage(
              static_cast<float*>(std::aligned_alloc(64, Kp * Np * sizeof(float))), &std::free);
          float* panel = storage.get();
          std::fill(panel, panel + Kp * Np, NAN);
          ikv::kernels::detail::dequantize_panel_avx512(W, 3, rows, lay, panel);
          bool same = true;
          for (int64_t n = 0; n < Np; ++n)
            for (int64_t k = 0; k < Kp; ++k) {
              const float expect = n < rows && k < K ? ref[(n + 3) * K + k] : 0.0f;
              same &= panel[lay.offset(k, n)] == expect;
            }
          CAPTURE(bits);
          CAPTURE(K);
          CAPTURE(rows);
          CAPTURE(nb);
          CHECK(same);
        }
}

TEST_CASE("IKV_NO_AVX512=1 forces the portable path; kAvx512 is refused without AVX-512") {
  const bool hw = ikv::kernels::cpu_features().avx512f && ikv::kernels::cpu_features().avx512bw;
  ::setenv("IKV_NO_AVX512", "1", 1);
  CHECK_FALSE(ikv::kernels::cpu_has_avx512());
  CHECK(ikv::kernels::resolve_isa(Isa::kAuto) == Isa::kPortable);
  CHECK_THROWS(ikv::kernels::resolve_isa(Isa::kAvx512));
  // The default path still computes the right thing with the variable set.
  const PackedMatrix W = random_packed(64, 256, {4, 128, false}, 1);
  check_against_reference(W, 1, Isa::kAuto, 2);
  ::setenv("IKV_NO_AVX512", "0", 1);
  CHECK(ikv::kernels::cpu_has_avx512() == (hw && ikv::kernels::cpu_features().avx512vl &&
                                            ikv::kernels::cpu_features().avx512dq));
  ::unsetenv("IKV_NO_AVX512");
  if (ikv::kernels::cpu_has_avx512()) CHECK(ikv::kernels::resolve_isa(Isa::kAuto) == Isa::kAvx512);
}

TEST_CASE("packed_matmul with M = 0 writes nothing") {
  const PackedMatrix W = random_packed(5, 64, {4, 64, false}, 1);
  float y = 42.0f;
  ikv::kernels::packed_matmul(W, nullptr, 0, &y);
  CHECK(y == 42.0f);
}
