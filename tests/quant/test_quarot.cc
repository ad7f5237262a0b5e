// QuaRot: the rotated FP model computes the original function (logits to float rounding), on a
// toy model whose FFN size needs the random orthogonal block and on testbed-26M (Paley block);
// an FP IntactKV prefix mapped into the rotated coordinates reproduces the FP logits; the W4A4
// model's integer GEMMs match its fake-quant twin; the quantized artifact re-rotates on load.
#include <omp.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "engine/forward.h"
#include "exp/model_setup.h"
#include "exp/variant.h"
#include "intactkv/prefix.h"
#include "io/error.h"
#include "kernels/int8_gemm.h"
#include "quant/artifact.h"
#include "quant/awq_search.h"
#include "kernels/packed_matrix.h"
#include "quant/quarot.h"
#include "test_util.h"

using namespace ikv;

namespace {

// A random LLaMA at toy size; hidden = 86 = 43 · 2 takes the random orthogonal block.
model::Weights tiny_model(uint32_t seed) {
  model::Config c;
  c.dim = 32, c.hidden = 86, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8, c.vocab = 40;
  c.max_pos = 64;
  return test::tiny_random_model(seed, c, 0.3f, 0.3f);
}

std::vector<float> logits_of(const model::Weights& w, const std::vector<int32_t>& ids,
                             const intactkv::Prefix* prefix = nullptr, int kv_bits = 16,
                             std::vector<std::vector<float>>* layers = nullptr) {
  engine::Engine eng(w);
  const int64_t P = prefix ? prefix->size() : 0, n = static_cast<int64_t>(ids.size());
  engine::KVCache cache = engine::make_kv_cache(w.config, n, kv_bits);
  if (prefix) intactkv::install_prefix(cache, *prefix, eng);
  std::vector<float> logits;
  engine::ForwardTaps taps;
  taps.layer_outputs = layers;
  eng.forward(cache, ids.data() + P, n - P, &logits, 0, taps);
  return logits;
}

// max |a − b| / max |b|.
double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0, m = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, double(std::abs(a[i] - b[i]))), m = std::max(m, double(std::abs(b[i])));
  return d / m;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, int32_t bos, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(3, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> ids(n);
  for (auto& t : ids) t = d(rng);
  ids[0] = bos;
  return ids;
}

}  // namespace

TEST_CASE("quarot: the rotated toy model gives the original logits (random orthogonal FFN block)") {
  const model::Weights fp = tiny_model(5);
  model::Weights rot = fp;
  quant::rotate_model(rot, 3);
  REQUIRE(rot.rotation);
  CHECK(rot.rotation->down.construction == "random-orthogonal(43) x sylvester(2)");
  CHECK(rot.rotation->residual.construction == "sylvester(32) with random signs (seed 3)");
  for (float g : rot.layers[0].attn_norm) CHECK(g == 1.0f);
  const std::vector<int32_t> ids = random_tokens(20, fp.config.vocab, fp.config.bos_id, 1);
  std::vector<std::vector<float>> fl, rl;
  const std::vector<float> a = logits_of(fp, ids, nullptr, 16, &fl), b = logits_of(rot, ids, nullptr, 16, &rl);
  CHECK(rel_diff(b, a) < 1e-5);
  // The residual stream is the FP one rotated by Q.
  for (size_t l = 0; l < fl.size(); ++l) {
    quant::residual_to_model(rot, fl[l].data(), static_cast<int64_t>(ids.size()));
    CHECK(rel_diff(rl[l], fl[l]) < 1e-5);
  }
  // Not twice, and not after quantizing.
  CHECK_THROWS_WITH(quant::rotate_model(rot), doctest::Contains("already rotated"));
  model::Weights q = fp;
  exp::quantize_weights(q, exp::rtn_spec(4, -1, true));
  CHECK_THROWS_WITH(quant::rotate_model(q), doctest::Contains("not a dense fp32 weight"));
}

TEST_CASE("quarot: FP + rotation + IntactKV reproduces the FP logits (toy model, prefix of 3)") {
  const model::Weights fp = tiny_model(8);
  model::Weights rot = fp;
  quant::rotate_model(rot);
  const std::vector<int32_t> ids = random_tokens(24, fp.config.vocab, fp.config.bos_id, 2);
  engine::Engine fe(fp);
  const intactkv::Prefix prefix = intactkv::build_prefix(fe, {ids.begin(), ids.begin() + 3});
  const std::vector<float> full = logits_of(fp, ids);
  const std::vector<float> with = logits_of(rot, ids, &prefix);
  // The IntactKV run scores positions 3.. only.
  const std::vector<float> tail(full.begin() + 3 * fp.config.vocab, full.end());
  CHECK(rel_diff(with, tail) < 1e-5);
  // The map matters: with another per-head rotation online (q·k does not notice) the prefix values
  // land in coordinates that o_proj does not undo.
  model::Weights wrong = rot;
  auto r = std::make_shared<model::Rotation>(*rot.rotation);
  r->head = kernels::make_hadamard(fp.config.head_dim, 99, true);
  wrong.rotation = r;
  CHECK(rel_diff(logits_of(wrong, ids, &prefix), tail) > 1e-3);
}

TEST_CASE("quarot on testbed-26M: rotated FP logits == FP logits; FP + rotation + IntactKV_[B] == FP") {
  if (test::data_root().empty()) return;
  const exp::LoadedModel m = exp::load_model_verified(test::data_root(), "testbed-26M");
  model::Weights rot = m.weights;
  quant::rotate_model(rot);
  CHECK(rot.rotation->down.construction == "paley(44) x sylvester(32)");
  CHECK(rot.rotation->head.construction == "sylvester(64)");
  const std::vector<int32_t> ids = random_tokens(96, m.weights.config.vocab, m.weights.config.bos_id, 3);
  const std::vector<float> a = logits_of(m.weights, ids), b = logits_of(rot, ids);
  INFO("rotated vs FP logits, max relative difference " << rel_diff(b, a));
  CHECK(rel_diff(b, a) < 2e-5);
  engine::Engine fe(m.weights);
  const intactkv::Prefix bos = intactkv::build_prefix(fe, {ids[0]});
  const std::vector<float> with = logits_of(rot, ids, &bos);
  const std::vector<float> tail(a.begin() + m.weights.config.vocab, a.end());
  INFO("rotated + IntactKV vs FP logits " << rel_diff(with, tail));
  CHECK(rel_diff(with, tail) < 2e-5);
}

TEST_CASE("quarot W4A4 on testbed-26M: integer GEMMs == fake-quant twin; artifact reloads bit-exactly") {
  if (test::data_root().empty()) return;
  const exp::LoadedModel m = exp::load_model_verified(test::data_root(), "testbed-26M");
  exp::QuantizerSpec q;
  q.method = "quarot", q.wbits = 4, q.group = -1, q.abits = 4, q.clip_ratio = 0.9;
  model::Weights w4a4 = m.weights;
  exp::quantize_weights(w4a4, q);
  REQUIRE(w4a4.rotation);
  for (auto& nl : model::named_linears(w4a4)) {
    CHECK(nl.linear->act_quant.bits == 4);
    CHECK(nl.linear->act_quant.clip == 0.9f);
    const auto* p = std::get_if<kernels::Packed>(&nl.linear->weight);
    REQUIRE(p);
    REQUIRE(p->int8);
    CHECK(p->m->sym);
    CHECK(p->m->group == nl.linear->in);
  }
  CHECK(w4a4.lm_head.act_quant.bits == 16);  // lm_head (and the embedding) stay full precision
  // The twin: the same rotated model with dequantized dense weights, activations fake-quantized.
  model::Weights twin = w4a4;
  for (auto& nl : model::named_linears(twin)) {
    kernels::Linear& l = *nl.linear;
    kernels::set_dense(l, kernels::linear_dense_weight(l));  // keeps the activation quantization
  }
  // Linear by linear on the W4A4 model's own inputs, layer after layer. (Whole-model logits are no
  // test: a last-bit difference that flips one activation's 4-bit rounding moves that value by a
  // whole step, and such flips compound over the layers.)
  const std::vector<int32_t> ids = random_tokens(64, m.weights.config.vocab, m.weights.config.bos_id, 4);
  const model::Config& c = w4a4.config;
  std::vector<float> x(64 * c.dim);
  for (int64_t t = 0; t < 64; ++t)
    w4a4.embed.row(ids[t], &x[t * c.dim]);
  engine::Engine eng(w4a4);
  auto tw = model::named_linears(twin);
  auto qw = model::named_linears(w4a4);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    engine::LinearInputs in;
    eng.layer_forward(l, x.data(), 64, &in);
    const std::vector<float>* inputs[7] = {&in.attn_in, &in.attn_in, &in.attn_in, &in.o_in, &in.ffn_in, &in.ffn_in, &in.down_in};
    for (int i = 0; i < 7; ++i) {
      const kernels::Linear &A = *qw[l * 7 + i].linear, &B = *tw[l * 7 + i].linear;
      std::vector<float> ya(64 * A.out), yb(64 * A.out);
      kernels::linear_forward(A, inputs[i]->data(), 64, ya.data());
      kernels::linear_forward(B, inputs[i]->data(), 64, yb.data());
      INFO(qw[l * 7 + i].name);
      CHECK(rel_diff(ya, yb) < 1e-5);
    }
  }
  const std::vector<float> a = logits_of(w4a4, ids, nullptr, 4);

  const std::string path = (std::filesystem::temp_directory_path() / "ikv-test-quarot.quant.safetensors").string();
  quant::save_quantized(w4a4, path, {{"method", "quarot"}});
  model::Weights loaded = m.weights;
  const auto meta = quant::load_quantized(loaded, path);
  std::filesystem::remove(path);
  CHECK(meta.at("rotation") == "quarot");
  CHECK(meta.at("act_bits") == "4");
  REQUIRE(loaded.rotation);
  CHECK(loaded.embed.to_f32() == w4a4.embed.to_f32());
  CHECK(kernels::dense_f32_weight(loaded.lm_head) == kernels::dense_f32_weight(w4a4.lm_head));
  CHECK(logits_of(loaded, ids, nullptr, 4) == a);
}

TEST_CASE("quarot a layer at a time: only the layer being rotated is fp32; the same model as rotate_model") {
  if (test::data_root().empty()) return;
  const exp::LoadedModel m = exp::load_model_verified(test::data_root(), "testbed-26M");  // fp16 as stored
  model::Weights whole = m.weights, steps = m.weights;
  quant::rotate_model(whole);
  quant::rotate_ends(steps);
  auto fp32_layers = [&] {
    int n = 0;
    for (const auto& L : steps.layers) n += std::holds_alternative<kernels::DenseF32>(L.q.weight);
    return n;
  };
  CHECK(fp32_layers() == 0);  // the ends only: the head is fp32, the embedding stays as stored
  CHECK(steps.embed.is_half());
  CHECK(steps.embed.rotate);
  quant::rotate_layer(steps, 0);
  CHECK(fp32_layers() == 1);
  for (int64_t l = 1; l < steps.config.n_layers; ++l) quant::rotate_layer(steps, l);
  const std::vector<int32_t> ids = random_tokens(40, m.weights.config.vocab, m.weights.config.bos_id, 9);
  CHECK(logits_of(steps, ids) == logits_of(whole, ids));
  // QuaRot through quantize_weights rotates and quantizes each layer in turn: same model.
  exp::QuantizerSpec q;
  q.method = "quarot", q.wbits = 4, q.group = -1, q.abits = 16;
  model::Weights streamed = m.weights, rotated = whole;
  exp::quantize_weights(streamed, q);
  exp::quantize_weights(rotated, exp::rtn_spec(4, -1, true));  // rotate_model, then RTN of the rotated linears
  CHECK(logits_of(streamed, ids) == logits_of(rotated, ids));
  model::Weights plain = m.weights;
  CHECK_THROWS_WITH(quant::rotate_layer(plain, 0), doctest::Contains("before rotate_ends"));
}

TEST_CASE("quarot and the AWQ fold on the families: biases and q/k norms pass through unchanged logits") {
  // tiny-qwen2 has q/k/v biases (the v bias rotates with v's per-head rotation and divides by
  // AWQ's v -> o scales); tiny-qwen3 q/k norms (before RoPE, so before the online head
  // rotation); a toy model with o/mlp biases (rotated by Q; up's bias divides by the down scales).
  std::vector<std::pair<std::string, model::Weights>> models;
  if (!test::data_root().empty())
    for (const char* name : {"tiny-qwen2", "tiny-qwen3", "tiny-llama3"})
      models.emplace_back(name, model::load_model(test::model_dir(name)));
  model::Config c;
  c.dim = 32, c.hidden = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8, c.vocab = 40;
  c.max_pos = 64, c.qkv_bias = c.o_bias = c.mlp_bias = true;
  models.emplace_back("toy with every bias", test::tiny_random_model(4, c, 0.3f, 0.3f));
  for (auto& [name, fp] : models) {
    CAPTURE(name);
    const std::vector<int32_t> ids = random_tokens(24, fp.config.vocab, std::max(fp.config.bos_id, 3), 6);
    const std::vector<float> want = logits_of(fp, ids);
    model::Weights rot = fp;
    quant::rotate_model(rot, 2);
    CHECK(rel_diff(logits_of(rot, ids), want) < 1e-5);
    model::Weights folded = fp;
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(0.5f, 2.0f);
    auto draw = [&](int64_t n) {
      std::vector<float> s(n);
      for (float& x : s) x = u(rng);
      return s;
    };
    for (model::LayerWeights& L : folded.layers) {
      for (kernels::Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) kernels::expand_to_f32(*l);
      quant::AwqLayerScales s;
      s.qkv = draw(fp.config.dim), s.o = draw(fp.config.kv_dim()), s.gate_up = draw(fp.config.dim);
      s.down = draw(fp.config.hidden);
      quant::fold_awq_scales(L, fp.config, s);
    }
    CHECK(rel_diff(logits_of(folded, ids), want) < 1e-5);
  }
}
