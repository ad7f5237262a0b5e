// GPTQ over models: the streamed Hessian, the act-order permutation through the artifact file, and
// testbed-26M's linears against RTN on held-out activations.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <unistd.h>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "engine/forward.h"
#include "exp/model_setup.h"
#include "exp/variant.h"
#include "io/error.h"
#include "kernels/gemm.h"
#include "quant/artifact.h"
#include "quant/gptq.h"
#include "kernels/packed_matrix.h"
#include "test_util.h"

using namespace ikv;

namespace {

using ikv::test::gaussian;
using ikv::test::random_calibration;

// ‖X Wᵀ − X Ŵᵀ‖² / ‖X Wᵀ‖² for one linear on inputs X [n, in].
double relative_output_error(const kernels::Linear& fp, const kernels::Linear& q, const std::vector<float>& X) {
  const int64_t n = static_cast<int64_t>(X.size()) / fp.in;
  std::vector<float> a(n * fp.out), b(n * fp.out);
  kernels::linear_forward(fp, X.data(), n, a.data());
  kernels::linear_forward(q, X.data(), n, b.data());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]), den += double(a[i]) * a[i];
  return num / den;
}

}  // namespace

TEST_CASE("HessianAccumulator == 2/T Σ x xᵀ across batches and tiles") {
  // 600 columns: two 512-wide tiles (one partial); batches of 100 tokens: several flushes plus a
  // partial one, with sequences that straddle them.
  const int64_t cols = 600;
  quant::HessianAccumulator acc(cols, 100);
  std::vector<double> ref(cols * cols, 0.0);
  int64_t T = 0;
  uint32_t seed = 1;
  for (int64_t n : {37, 250, 13, 1, 64}) {
    const auto x = gaussian(n * cols, seed++);
    acc.add(x.data(), n);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < cols; ++i)
        for (int64_t j = 0; j < cols; ++j) ref[i * cols + j] += double(x[t * cols + i]) * x[t * cols + j];
    T += n;
  }
  CHECK(acc.tokens() == T);
  const auto H = acc.hessian();
  double worst = 0;
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const double r = 2.0 / T * ref[i * cols + j];
      // fp32 GEMM over at most 100 tokens per batch: |error| ~ 1e-7 · Σ|x_i x_j| ≤ 1e-7 · 2 · T.
      worst = std::max(worst, std::fabs(H[i * cols + j] - r));
      CHECK(H[i * cols + j] == H[j * cols + i]);
    }
  CHECK(worst < 1e-5);
  CHECK_THROWS_WITH_AS(acc.hessian(), doctest::Contains("already taken"), ikv::Error);  // handed over once
  quant::HessianAccumulator empty(8);
  CHECK_THROWS_AS(empty.hessian(), ikv::Error);
}

TEST_CASE("act-order permutation round-trips through save_quantized / load_quantized") {
  if (test::data_root().empty()) return;
  exp::LoadedModel m = exp::load_model_verified(test::data_root(), "stories260K");
  const model::Weights fp = m.weights;
  model::Weights& w = m.weights;
  const quant::CalibrationTokens calib = random_calibration(w.config, 4, 96, 5);
  quant::GptqOptions opt;
  opt.spec = {3, 4, false};
  opt.act_order = true;
  quant::quantize_model_gptq(w, calib, opt);
  const std::string dir = std::filesystem::temp_directory_path() / ("ikv-gptq-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/s.quant.safetensors";
  quant::save_quantized(w, path, {{"method", "gptq"}});

  model::Weights loaded = fp;
  quant::load_quantized(loaded, path);
  auto a = model::named_linears(w), b = model::named_linears(loaded), f = model::named_linears(const_cast<model::Weights&>(fp));
  int64_t permuted = 0;
  const auto X = gaussian(5 * 172, 9);
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].name);
    const kernels::Linear &la = *a[i].linear, &lb = *b[i].linear;
    const auto *pa = std::get_if<kernels::Packed>(&la.weight), *pb = std::get_if<kernels::Packed>(&lb.weight);
    REQUIRE(pa);
    REQUIRE(pb);
    CHECK(pb->in_perm == pa->in_perm);
    permuted += !pa->in_perm.empty();
    CHECK(pb->m->scales == pa->m->scales);
    CHECK(pb->m->zeros == pa->m->zeros);
    CHECK(std::memcmp(pb->m->codes.data(), pa->m->codes.data(), pa->m->codes.size() * 64) == 0);
    // Through the permutation, the packed matmul is the dense matmul of the un-permuted weight.
    const std::vector<float> x(X.begin(), X.begin() + 5 * lb.in);
    std::vector<float> y(5 * lb.out), ref(5 * lb.out);
    kernels::linear_forward(lb, x.data(), 5, y.data());
    const auto dense = kernels::linear_dense_weight(lb);
    kernels::gemm_reference(x.data(), 5, lb.in, dense.data(), lb.out, ref.data());
    for (size_t k = 0; k < y.size(); ++k) CHECK(y[k] == doctest::Approx(ref[k]).epsilon(1e-4).scale(1.0));
    // And un-permuting gives a weight close to the FP one (W3 with groups of 4).
    CHECK(relative_output_error(*f[i].linear, lb, x) < 0.2);
  }
  CHECK(permuted == static_cast<int64_t>(a.size()));

  // A broken permutation is refused at load, naming the file and the tensor.
  std::vector<int32_t>& up_perm = std::get<kernels::Packed>(w.layers[1].up.weight).in_perm;
  up_perm[3] = up_perm[4];
  quant::save_quantized(w, path, {{"method", "gptq"}});
  model::Weights again = fp;
  CHECK_THROWS_WITH_AS(quant::load_quantized(again, path),
                       doctest::Contains("s.quant.safetensors: tensor model.layers.1.mlp.up_proj.weight.perm is not a "
                                         "permutation of 0..63 (entry 4 = "),
                       ikv::Error);
  // An artifact without permutations (RTN) leaves none behind on reload.
  model::Weights rtn = fp;
  exp::quantize_weights(rtn, exp::rtn_spec(3, 4));
  quant::save_quantized(rtn, path, {{"method", "rtn"}});
  quant::load_quantized(loaded, path);
  for (auto& nl : model::named_linears(loaded)) CHECK(std::get<kernels::Packed>(nl.linear->weight).in_perm.empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("testbed-26M: GPTQ W3g128 linears beat RTN on held-out activations") {
  // 64 ShareGPT conversations of up to 256 tokens calibrate; 4 other conversations are held out.
  // They are the same distribution: what GPTQ learned about the inputs' correlations must carry
  // over to new tokens. That takes enough tokens per input channel: with 16 conversations (~3 per
  // down_proj input) GPTQ fits noise and down_proj came out 5-10% above RTN on held-out tokens
  // (while 35% below in-sample); with 64 (~12) it is 10-40% below. The default is 128 x 1024.
  if (test::data_root().empty()) return;
  exp::LoadedModel m = exp::load_model_verified(test::data_root(), "testbed-26M");
  const model::Weights& fp = m.weights;
  exp::QuantizerSpec q;
  q.method = "gptq", q.wbits = 3, q.group = 128, q.samples = 68, q.seq_len = 256;
  quant::CalibrationTokens calib = exp::calibration_tokens(test::data_root(), m, q, 0);
  REQUIRE(calib.size() == 68);
  const quant::CalibrationTokens held(calib.begin() + 64, calib.end());
  calib.resize(64);
  model::Weights gptq = fp, rtn = fp;
  quant::GptqOptions opt;
  opt.spec = {3, 128, false};
  std::vector<int64_t> reported;  // progress: once per layer, in order
  quant::quantize_model_gptq(gptq, calib, opt, [&](int64_t l, int64_t n, double seconds) {
    reported.push_back(l);
    CHECK(n == fp.config.n_layers);
    CHECK(seconds >= 0);
  });
  CHECK(reported == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  exp::quantize_weights(rtn, exp::rtn_spec(3, 128));

  // The held-out inputs of every linear, from the FP model run layer by layer.
  const int64_t D = fp.config.dim;
  std::vector<std::vector<float>> xs;
  for (const auto& ids : held) {
    xs.emplace_back(ids.size() * D);
    for (size_t t = 0; t < ids.size(); ++t) fp.embed.row(ids[t], &xs.back()[t * D]);
  }
  const engine::Engine eng(fp);
  auto G = model::named_linears(gptq), R = model::named_linears(rtn), F = model::named_linears(const_cast<model::Weights&>(fp));
  int64_t better = 0, total = 0;
  double sum_g = 0, sum_r = 0;
  for (int64_t l = 0; l < fp.config.n_layers; ++l) {
    std::vector<float> inputs[7];  // every held-out token, per linear
    for (auto& x : xs) {
      engine::LinearInputs in;
      eng.layer_forward(l, x.data(), static_cast<int64_t>(x.size()) / D, &in);
      const std::vector<float>* by_linear[7] = {&in.attn_in, &in.attn_in, &in.attn_in, &in.o_in, &in.ffn_in, &in.ffn_in, &in.down_in};
      for (int k = 0; k < 7; ++k) inputs[k].insert(inputs[k].end(), by_linear[k]->begin(), by_linear[k]->end());
    }
    for (int k = 0; k < 7; ++k) {
      const size_t i = l * 7 + k;
      const double eg = relative_output_error(*F[i].linear, *G[i].linear, inputs[k]);
      const double er = relative_output_error(*F[i].linear, *R[i].linear, inputs[k]);
      MESSAGE(F[i].name << ": relative output error GPTQ " << eg << ", RTN " << er);
      better += eg < er, ++total, sum_g += eg, sum_r += er;
    }
  }
  MESSAGE("GPTQ below RTN on " << better << " of " << total << " linears; mean relative error " << sum_g / total
                               << " vs " << sum_r / total);
  CHECK(better == total);
  CHECK(sum_g < 0.8 * sum_r);
}

TEST_CASE("quantizers stream: when layer l starts, the layers before it are packed and the rest still the mapped 16-bit views") {
  if (test::data_root().empty()) return;
  exp::LoadedModel m = exp::load_model_verified(test::data_root(), "testbed-26M");  // fp16, mapped
  model::Weights& w = m.weights;
  const int64_t n_layers = w.config.n_layers;
  auto form = [&](int64_t l) {  // 0 = mapped 16-bit view, 1 = fp32 (expanded), 2 = packed, -1 = mixed
    int views = 0, fp32 = 0, packed = 0;
    const model::LayerWeights& L = w.layers[l];
    for (const kernels::Linear* x : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) {
      views += std::holds_alternative<kernels::DenseHalf>(x->weight);
      fp32 += std::holds_alternative<kernels::DenseF32>(x->weight);
      packed += std::holds_alternative<kernels::Packed>(x->weight);
    }
    return views == 7 ? 0 : fp32 == 7 ? 1 : packed == 7 ? 2 : -1;
  };
  const quant::CalibrationTokens calib = random_calibration(w.config, 2, 32, 5);
  quant::GptqOptions opt;
  opt.spec = {4, 128, false};
  std::vector<int64_t> seen;
  opt.before_layer = [&](int64_t l) {
    seen.push_back(l);
    for (int64_t j = 0; j < n_layers; ++j) {
      CAPTURE(l);
      CAPTURE(j);
      CHECK(form(j) == (j < l ? 2 : 0));
    }
  };
  const int64_t mapped = model::mapped_layer_bytes(w);
  CHECK(mapped > 0);
  quant::quantize_model_gptq(w, calib, opt);
  CHECK(seen.size() == static_cast<size_t>(n_layers));
  for (int64_t j = 0; j < n_layers; ++j) CHECK(form(j) == 2);
  CHECK(model::mapped_layer_bytes(w) == 0);  // every view let go (its pages released with it)
}
