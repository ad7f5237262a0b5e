// The engine on packed low-bit weights against the fake-quant reference (dense fp32 weights that
// went through quantize → dequantize in exact fp32): the independent check of the whole W3/W4
// path at real shapes (multi-panel GEMMs with tails, GEMV, both ISAs).
#include <cmath>
#include <filesystem>
#include <random>

#include "eval/perplexity.h"
#include "exp/model_setup.h"
#include "exp/variant.h"
#include "io/error.h"
#include "io/mapped_file.h"
#include "kernels/gemm.h"
#include "kernels/linear.h"
#include "kernels/packed_matmul.h"
#include "quant/artifact.h"
#include "quant/rtn.h"
#include "test_util.h"

using namespace ikv;

TEST_CASE("packed W4/W3 linears of testbed-26M == fake-quant reference at M = 1, 7, 512") {
  if (test::data_root().empty()) return;
  exp::LoadedModel m = exp::load_model_verified(test::data_root(), "testbed-26M");
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (int bits : {3, 4}) {
    kernels::QuantSpec spec{bits, 128, false};
    auto linears = model::named_linears(m.weights);
    // One layer's seven linears cover every shape of the model (K, N ∈ {512, 256, 1408}).
    for (size_t i = 0; i < 7; ++i) {
      const kernels::Linear& l = *linears[i].linear;
      const std::vector<float> w = kernels::linear_dense_weight(l);
      kernels::PackedMatrix P = quant::quantize_rtn(w.data(), l.out, l.in, spec, linears[i].name);
      std::vector<float> fq(w.size());
      quant::fake_quantize_rtn(w.data(), l.out, l.in, spec, fq.data());
      for (int64_t M : {1, 7, 512}) {
        std::vector<float> X(M * l.in), Y(M * l.out), R(M * l.out);
        for (auto& x : X) x = nd(rng);
        kernels::gemm_reference(X.data(), M, l.in, fq.data(), l.out, R.data());
        for (auto isa : {kernels::Isa::kAuto, kernels::Isa::kPortable}) {
          kernels::packed_matmul(P, X.data(), M, Y.data(), isa);
          double err = 0, ref = 0;
          for (size_t j = 0; j < Y.size(); ++j) err += (Y[j] - R[j]) * (Y[j] - R[j]), ref += R[j] * R[j];
          // Same codes; only the fp16 storage of the scales (relative 2^-11) and fp32
          // accumulation order differ: a relative L2 error of 1e-3 leaves a 2x margin.
          INFO(linears[i].name << " bits " << bits << " M " << M);
          CHECK(std::sqrt(err / ref) < 1e-3);
        }
      }
    }
  }
}

TEST_CASE("testbed-26M perplexity on packed W3 weights == fake-quant reference (0.05%)") {
  if (test::data_root().empty()) return;
  exp::LoadedModel packed = exp::load_model_verified(test::data_root(), "testbed-26M");
  exp::LoadedModel fake = exp::load_model_verified(test::data_root(), "testbed-26M");
  exp::quantize_weights(packed.weights, exp::rtn_spec(3));
  for (auto& nl : model::named_linears(fake.weights)) {
    const std::vector<float> w = kernels::linear_dense_weight(*nl.linear);
    std::vector<float> out(w.size());
    quant::fake_quantize_rtn(w.data(), nl.linear->out, nl.linear->in, {3, 128, false}, out.data());
    kernels::set_dense(*nl.linear, out);
  }
  auto text = io::read_text_file(test::data_root() + "/datasets/wikitext-2-raw/wiki.test.raw").substr(0, 60000);
  auto stream = eval::perplexity_stream(*fake.tokenizer, text, 1);
  eval::PerplexityOptions opt;
  opt.windows = 2;
  opt.progress = false;
  engine::Engine ep(packed.weights), ef(fake.weights);
  const double a = eval::perplexity(ep, stream, opt).ppl, b = eval::perplexity(ef, stream, opt).ppl;
  MESSAGE("W3g128 packed " << a << " vs fake-quant " << b);
  CHECK(std::fabs(a - b) / b < 5e-4);
}

// Each of the first layer's packed linears takes `act` inputs: linear_forward gives X'·W' with X' =
// X rounded as act says (to fp32 accumulation, ~1e-7 relative), and moves away from exact X·W' by
// more than `moved` (relative rms), so the input really was rounded. Ms span the paths each dtype
// takes (bf16: the vdpbf16ps GEMV below 24 rows, rounding + fp32 kernels above; q8: the tiles).
namespace {

void check_packed_inputs(model::Weights& w, kernels::Activations act, std::initializer_list<int64_t> Ms,
                         double moved, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  auto linears = model::named_linears(w);
  for (size_t i = 0; i < 7; ++i) {
    const kernels::Linear& l = *linears[i].linear;
    const auto* p = std::get_if<kernels::Packed>(&l.weight);
    REQUIRE(p);
    CHECK(p->rounding == act);
    for (int64_t M : Ms) {
      std::vector<float> X(M * l.in), Y(M * l.out), R(M * l.out), R32(M * l.out);
      for (auto& x : X) x = nd(rng);
      kernels::linear_forward(l, X.data(), M, Y.data());
      const auto codes = kernels::packed_codes(*p);  // under q8 the tiles hold the codes
      kernels::packed_matmul_reference(*codes, X.data(), M, R.data(), act);
      kernels::packed_matmul_reference(*codes, X.data(), M, R32.data());
      double e = 0, e32 = 0, ref = 0;
      for (size_t j = 0; j < Y.size(); ++j) {
        e += (Y[j] - R[j]) * (Y[j] - R[j]);
        e32 += (Y[j] - R32[j]) * (Y[j] - R32[j]);
        ref += R[j] * R[j];
      }
      INFO(linears[i].name << " M " << M);
      CHECK(std::sqrt(e / ref) < 1e-5);
      CHECK(std::sqrt(e32 / ref) > moved);
    }
  }
}

}  // namespace

TEST_CASE("bf16 compute on a packed model: each packed linear computes bf16(X)·W'") {
  if (test::data_root().empty()) return;
  exp::LoadedModel m = exp::load_model_verified(test::data_root(), "testbed-26M");
  exp::quantize_weights(m.weights, exp::rtn_spec(4));
  model::convert_linears_to_bf16(m.weights);
  const auto* head = std::get_if<kernels::DenseHalf>(&m.weights.lm_head.weight);
  REQUIRE(head);  // the dense head is bf16 too: testbed's fp16 weight converted once
  CHECK(head->w.type == kernels::Half::kBf16);
  CHECK(head->compute == kernels::Activations::kBf16);
  // Rounding X to bf16 moves the output by ~2^-9/sqrt(3) ≈ 1e-3 relative.
  check_packed_inputs(m.weights, kernels::Activations::kBf16, {1, 7}, 1e-4, 5);
}

TEST_CASE("dtype q8 on a packed model: each packed linear computes q8(X)·W', dense ones stay fp32") {
  if (test::data_root().empty()) return;
  exp::LoadedModel m = exp::load_model_verified(test::data_root(), "testbed-26M");
  exp::quantize_weights(m.weights, exp::rtn_spec(3));
  exp::apply_dtype(m.weights, "q8");
  // The dense head keeps fp32 compute on its weight as stored (testbed-26M: fp16).
  const auto* head = std::get_if<kernels::DenseHalf>(&m.weights.lm_head.weight);
  REQUIRE(head);
  CHECK(head->compute == kernels::Activations::kFp32);
  CHECK(head->w.type == kernels::Half::kF16);
  // int8 blocks move each input by up to max|x| / 254 (~1e-2 of a Gaussian block's max; ~5e-3
  // relative in rms). Every M runs the tiled vpdpbusd kernel on VNNI CPUs (M = 30 in 8 passes of
  // up to 4 rows).
  check_packed_inputs(m.weights, kernels::Activations::kQ8, {1, 7, 30}, 1e-3, 6);
  for (auto& nl : model::named_linears(m.weights)) {
    const auto& p = std::get<kernels::Packed>(nl.linear->weight);
    CHECK((p.q8_tiles != nullptr) == kernels::q8_tiles_runs_here());
    CHECK((p.m == nullptr) == kernels::q8_tiles_runs_here());  // the tiles replace the row layout
  }
  CHECK_THROWS_WITH_AS(exp::apply_dtype(m.weights, "int4"), doctest::Contains("dtype 'int4' is not supported"),
                       ikv::Error);
}

TEST_CASE("--quant-head: lm_head packed by RTN to the given bits, the same after loading an artifact") {
  if (test::data_root().empty()) return;
  exp::LoadedModel fp = exp::load_model_verified(test::data_root(), "testbed-26M");
  exp::QuantizerSpec q = exp::rtn_spec(4);
  q.head_bits = 8;
  CHECK(q.short_label() == "rtn-w4g128-head8");
  model::Weights w = fp.weights;
  exp::quantize_weights(w, q);
  const auto* head = std::get_if<kernels::Packed>(&w.lm_head.weight);
  REQUIRE(head);
  CHECK(head->m->bits == 8);
  CHECK(head->m->group == 128);
  // The head's codes are RTN's of the FP head (the reference's fake quantization, exactly).
  const kernels::Linear& l = fp.weights.lm_head;
  const std::vector<float> dense = kernels::linear_dense_weight(l);
  std::vector<float> fq(dense.size());
  quant::fake_quantize_rtn(dense.data(), l.out, l.in, {8, 128, false}, fq.data());
  const std::vector<float> got = kernels::linear_dense_weight(w.lm_head);
  double err = 0, ref = 0;
  for (size_t i = 0; i < fq.size(); ++i) err += (got[i] - fq[i]) * (got[i] - fq[i]), ref += fq[i] * fq[i];
  CHECK(std::sqrt(err / ref) < 1e-3);  // fp16-rounded scales: within 2^-11 per weight
  // An artifact holds the decoder layers; loading it and quantizing the head gives the same model.
  const std::string path = (std::filesystem::temp_directory_path() / "ikv-test-head8.quant.safetensors").string();
  quant::save_quantized(w, path, {{"method", "rtn"}});
  model::Weights loaded = fp.weights;
  const exp::QuantizerSpec described = exp::quantize_or_load(loaded, fp, q, "", 0, path);
  CHECK(described.head_bits == 8);
  std::vector<int32_t> ids = fp.tokenizer->encode("The quick brown fox jumps over the lazy dog.");
  ids.insert(ids.begin(), fp.weights.config.bos_id);
  auto logits_of = [&](const model::Weights& m) {
    engine::Engine e(m);
    engine::KVCache cache = engine::make_kv_cache(m.config, static_cast<int64_t>(ids.size()));
    std::vector<float> out;
    e.forward(cache, ids.data(), static_cast<int64_t>(ids.size()), &out);
    return out;
  };
  CHECK(logits_of(loaded) == logits_of(w));
  CHECK(logits_of(w) != logits_of(fp.weights));
  std::filesystem::remove(path);
  CHECK_THROWS_WITH(exp::validate_variant([&] {
                      exp::VariantSpec v;
                      v.quant.head_bits = 8;
                      return v;
                    }()),
                    doctest::Contains("--quant-head needs a weight quantizer"));
}
