// The packed artifact written a decoder layer at a time (quant::QuantizedArtifactWriter): the same
// bytes as the file written at once after quantizing, the same logits on reload, clear errors for a
// layer out of order or packed otherwise than declared, and no file left by an interrupted run.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/forward.h"
#include "exp/model_setup.h"
#include "exp/variant.h"
#include "io/error.h"
#include "io/safetensors.h"
#include "kernels/linear.h"
#include "quant/artifact.h"
#include "quant/quarot.h"
#include "quant/rtn.h"
#include "test_util.h"

using namespace ikv;
namespace fs = std::filesystem;

namespace {

// save_quantized as it was before the writer: every tensor collected after quantizing, then one
// io::write_safetensors. The reference the streamed file must equal byte for byte.
void save_all_at_once(model::Weights& w, const std::string& path, const std::map<std::string, std::string>& settings) {
  std::vector<io::TensorToWrite> tensors;
  std::vector<std::shared_ptr<const kernels::PackedMatrix>> kept;
  std::string bits, sym;
  int64_t group = -1;
  for (auto& nl : model::named_linears(w)) {
    const auto* packed = std::get_if<kernels::Packed>(&nl.linear->weight);
    REQUIRE(packed);
    const std::shared_ptr<const kernels::PackedMatrix> codes = kernels::packed_codes(*packed);
    kept.push_back(codes);
    const kernels::PackedMatrix& p = *codes;
    const int64_t lanes = static_cast<int64_t>(p.codes.size()) * 16;
    tensors.push_back({nl.name + ".codes", io::DType::U32, {p.rows, lanes / p.rows}, p.codes.data(), p.codes.size() * 64});
    tensors.push_back({nl.name + ".scales", io::DType::F16, {p.rows, p.groups_per_row()}, p.scales.data(), p.scales.size() * 2});
    if (!p.sym) tensors.push_back({nl.name + ".zeros", io::DType::U8, {static_cast<int64_t>(p.zeros.size())}, p.zeros.data(), p.zeros.size()});
    const std::vector<int32_t>& perm = packed->in_perm;
    if (!perm.empty())
      tensors.push_back({nl.name + ".perm", io::DType::I32, {static_cast<int64_t>(perm.size())}, perm.data(), perm.size() * 4});
    if (p.group != p.cols) group = p.group;
    bits = std::to_string(p.bits);
    sym = p.sym ? "1" : "0";
  }
  if (auto it = settings.find("method"); it != settings.end() && it->second == "awq")
    for (size_t l = 0; l < w.layers.size(); ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const int64_t dim = w.config.dim;
      tensors.push_back({p + "input_layernorm.weight", io::DType::F32, {dim}, w.layers[l].attn_norm.data(), dim * 4ul});
      tensors.push_back({p + "post_attention_layernorm.weight", io::DType::F32, {dim}, w.layers[l].ffn_norm.data(), dim * 4ul});
    }
  std::map<std::string, std::string> meta = settings;
  meta["ikv_quant_format"] = "1";
  meta["bits"] = bits;
  meta["group"] = std::to_string(group);
  meta["sym"] = sym;
  meta["source_fingerprint"] = w.fingerprint;
  if (w.rotation) {
    meta["rotation"] = "quarot";
    meta["rotation_seed"] = std::to_string(w.rotation->seed);
  }
  if (const kernels::ActQuant& act = model::named_linears(w).front().linear->act_quant; act.bits < 16) {
    char clip[32];
    std::snprintf(clip, sizeof clip, "%.9g", act.clip);
    meta["act_bits"] = std::to_string(act.bits);
    meta["act_clip"] = clip;
  }
  io::write_safetensors(path, tensors, meta);
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), {}};
}

struct TempDir {
  std::string path = (fs::temp_directory_path() / ("ikv-artifact-test-" + std::to_string(::getpid()))).string();
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

// Quantizes w by q with each layer written as it is packed, as `ikv-eval quantize` does; checks
// at every layer that nothing is at `path` yet (only PATH.tmp).
void quantize_streamed(model::Weights& w, const exp::QuantizerSpec& q, const quant::CalibrationTokens& calib,
                       const std::string& path, const std::map<std::string, std::string>& settings) {
  quant::QuantizedArtifactWriter out(w, exp::artifact_layout(q), path, settings);
  int64_t written = 0;
  exp::quantize_weights(w, q, calib, nullptr, [&](int64_t l) {
    CHECK(l == written);
    CHECK(!fs::exists(path));
    CHECK(fs::exists(path + ".tmp"));
    out.write_layer(w, l);
    ++written;
  });
  CHECK(written == w.config.n_layers);
  out.finish(w);
  CHECK(!fs::exists(path + ".tmp"));
}

std::vector<float> logits_of(const model::Weights& w, const std::vector<int32_t>& ids) {
  engine::Engine e(w);
  engine::KVCache cache = engine::make_kv_cache(w.config, static_cast<int64_t>(ids.size()));
  std::vector<float> out;
  e.forward(cache, ids.data(), static_cast<int64_t>(ids.size()), &out);
  return out;
}

model::Weights tiny_model() {
  model::Config c;
  c.dim = 32, c.hidden = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8, c.vocab = 40;
  c.max_pos = 64;
  return test::tiny_random_model(3, c, 0.3f, 0.3f);
}

exp::QuantizerSpec gptq_spec(int wbits, int group) {
  exp::QuantizerSpec q;
  q.method = "gptq", q.wbits = wbits, q.group = group, q.act_order = true;
  return q;
}

struct Case {
  std::string name;
  exp::QuantizerSpec quant;
  int calib_len = 0;  // random calibration sequences of this length (0: none)
};

// Streams `fp` quantized by c.quant to a file and checks it against the all-at-once file of the
// same quantized weights, save_quantized's file, and the logits of the weights loaded back.
void check_streamed(const model::Weights& fp, const Case& c, const TempDir& dir) {
  CAPTURE(c.name);
  const quant::CalibrationTokens calib =
      c.calib_len ? test::random_calibration(fp.config, 4, c.calib_len, 7) : quant::CalibrationTokens{};
  const std::map<std::string, std::string> settings{{"method", c.quant.method}, {"label", c.name}};
  model::Weights w = fp;
  const std::string streamed = dir.file("streamed.quant.safetensors"), at_once = dir.file("at-once.quant.safetensors"),
                    saved = dir.file("saved.quant.safetensors");
  quantize_streamed(w, c.quant, calib, streamed, settings);
  save_all_at_once(w, at_once, settings);
  quant::save_quantized(w, saved, settings);
  const std::string bytes = file_bytes(streamed);
  CHECK(bytes.size() > 1000);
  CHECK(bytes == file_bytes(at_once));
  CHECK(bytes == file_bytes(saved));
  const io::SafetensorsFile f(streamed);
  CHECK((f.find("model.layers.0.self_attn.q_proj.weight.perm") != nullptr) == c.quant.act_order);
  CHECK((f.find("model.layers.0.input_layernorm.weight") != nullptr) == (c.quant.method == "awq"));
  // The weights loaded back compute what the quantized weights computed.
  model::Weights loaded = fp;
  quant::load_quantized(loaded, streamed);
  std::vector<int32_t> ids{fp.config.bos_id};
  for (int32_t t = 0; t < 12; ++t) ids.push_back((t * 7 + 3) % static_cast<int32_t>(fp.config.vocab));
  const std::vector<float> quantized = logits_of(w, ids);
  CHECK(logits_of(loaded, ids) == quantized);
  CHECK(quantized != logits_of(fp, ids));
  for (const std::string& file : {streamed, at_once, saved}) fs::remove(file);
}

}  // namespace

TEST_CASE("an artifact written a layer at a time is the file written at once after quantizing") {
  TempDir dir;
  const model::Weights tiny = tiny_model();
  check_streamed(tiny, {"tiny RTN W4g8", exp::rtn_spec(4, 8)}, dir);
  check_streamed(tiny, {"tiny GPTQ W3g8 act-order", gptq_spec(3, 8), 16}, dir);
  if (test::data_root().empty()) return;
  const exp::LoadedModel testbed = exp::load_model_verified(test::data_root(), "testbed-26M");
  check_streamed(testbed.weights, {"testbed-26M RTN W3g128", exp::rtn_spec(3, 128)}, dir);
  const exp::LoadedModel stories = exp::load_model_verified(test::data_root(), "stories260K");
  check_streamed(stories.weights, {"stories260K GPTQ W3g4 act-order", gptq_spec(3, 4), 64}, dir);
  exp::QuantizerSpec awq;
  awq.method = "awq", awq.wbits = 4, awq.group = 4;
  check_streamed(stories.weights, {"stories260K AWQ W4g4", awq, 32}, dir);
  exp::QuantizerSpec quarot;
  quarot.method = "quarot", quarot.wbits = 4, quarot.group = -1, quarot.abits = 8, quarot.clip_ratio = 0.9;
  check_streamed(stories.weights, {"stories260K QuaRot W4A8", quarot}, dir);
}

TEST_CASE("the declared packed sizes are the quantizer's") {
  const std::vector<float> W = test::gaussian(6 * 96, 2);
  for (int bits = 2; bits <= 8; ++bits)
    for (int group : {-1, 4, 32, 96})
      for (bool sym : {false, true}) {
        const kernels::QuantSpec spec{bits, group, sym};
        CAPTURE(bits);
        CAPTURE(group);
        CAPTURE(sym);
        const kernels::PackedMatrix p = quant::quantize_rtn(W.data(), 6, 96, spec, "w");
        const kernels::PackedSizes s = kernels::packed_sizes(6, 96, spec);
        CHECK(p.codes.size() == static_cast<size_t>(6 * s.row_words));
        CHECK(p.groups_per_row() == s.groups_per_row);
        CHECK(p.scales.size() == static_cast<size_t>(6 * s.groups_per_row));
        CHECK(p.zeros.size() == static_cast<size_t>(s.zero_bytes));
      }
}

TEST_CASE("artifact writer: layers out of order, other packings and early finishes are refused") {
  TempDir dir;
  const std::string path = dir.file("w.quant.safetensors");
  const model::Weights fp = tiny_model();
  model::Weights w4 = fp;
  exp::quantize_weights(w4, exp::rtn_spec(4, 8));
  auto nothing_left = [&] {
    CHECK(!fs::exists(path));
    CHECK(!fs::exists(path + ".tmp"));
  };
  {
    quant::QuantizedArtifactWriter out(w4, exp::artifact_layout(exp::rtn_spec(4, 8)), path, {{"method", "rtn"}});
    CHECK_THROWS_WITH_AS(out.write_layer(w4, 1),
                         doctest::Contains("w.quant.safetensors: layer 1 written out of order (layers go 0..1; layer 0 is next)"),
                         ikv::Error);
    CHECK_THROWS_WITH_AS(out.finish(w4), doctest::Contains("finished after 0 of 2 layers"), ikv::Error);
    out.write_layer(w4, 0);  // a refused call wrote nothing: layer 0 still fits
    CHECK_THROWS_WITH_AS(out.write_layer(w4, 0), doctest::Contains("layer 0 written out of order"), ikv::Error);
    CHECK_THROWS_WITH_AS(out.finish(w4), doctest::Contains("finished after 1 of 2 layers"), ikv::Error);
  }
  nothing_left();
  {  // Declared W3, packed W4: the first linear names both packings.
    quant::QuantizedArtifactWriter out(w4, exp::artifact_layout(exp::rtn_spec(3, 8)), path, {{"method", "rtn"}});
    CHECK_THROWS_WITH_AS(out.write_layer(w4, 0),
                         doctest::Contains("w.quant.safetensors: model.layers.0.self_attn.q_proj.weight is packed as "
                                           "32 x 32, 4 bits, group 8, asym: 32 code words, 128 scales, 64 zero bytes, "
                                           "0 perm entries; the header declares 32 x 32, 3 bits, group 8, asym: 32 "
                                           "code words, 128 scales, 64 zero bytes, 0 perm entries"),
                         ikv::Error);
  }
  nothing_left();
  {  // Declared with act-order permutations, packed without.
    quant::QuantizedArtifactWriter out(w4, exp::artifact_layout(gptq_spec(4, 8)), path, {{"method", "gptq"}});
    CHECK_THROWS_WITH_AS(out.write_layer(w4, 0), doctest::Contains("0 perm entries; the header declares"), ikv::Error);
  }
  nothing_left();
  {  // Declared per-channel: the scales differ in number.
    quant::QuantizedArtifactWriter out(w4, exp::artifact_layout(exp::rtn_spec(4, -1)), path, {{"method", "rtn"}});
    CHECK_THROWS_WITH_AS(out.write_layer(w4, 0), doctest::Contains("32 scales, 16 zero bytes"), ikv::Error);
  }
  nothing_left();
  {  // Not quantized yet; and QuaRot's rotation is checked at the first layer.
    model::Weights unquantized = fp;
    quant::QuantizedArtifactWriter out(unquantized, exp::artifact_layout(exp::rtn_spec(4, 8)), path, {});
    CHECK_THROWS_WITH_AS(out.write_layer(unquantized, 0),
                         doctest::Contains("model.layers.0.self_attn.q_proj.weight is not quantized"), ikv::Error);
    exp::QuantizerSpec quarot;
    quarot.method = "quarot", quarot.wbits = 4, quarot.group = -1, quarot.abits = 8;
    quant::QuantizedArtifactWriter rotated(unquantized, exp::artifact_layout(quarot), path, {});
    CHECK_THROWS_WITH_AS(rotated.write_layer(w4, 0),
                         doctest::Contains("the model's rotation (none) is not the header's (seed 0)"), ikv::Error);
  }
  nothing_left();
  {  // Activation quantization announced in the header but not on at the end.
    exp::QuantizerSpec quarot;
    quarot.method = "quarot", quarot.wbits = 4, quarot.group = -1, quarot.abits = 8;
    model::Weights w = fp;
    quant::QuantizedArtifactWriter out(w, exp::artifact_layout(quarot), path, {});
    exp::quantize_weights(w, quarot, {}, nullptr, [&](int64_t l) { out.write_layer(w, l); });
    quant::set_activation_quant(w, 16, 1);
    CHECK_THROWS_WITH_AS(out.finish(w),
                         doctest::Contains("model.layers.0.self_attn.q_proj.weight quantizes activations to 16 bits "
                                           "(clip 1); the header declares 8 bits (clip 1)"),
                         ikv::Error);
  }
  nothing_left();
  // A spec the model cannot take fails before any file exists.
  CHECK_THROWS_WITH_AS(quant::QuantizedArtifactWriter(w4, exp::artifact_layout(exp::rtn_spec(4, 5)), path, {}),
                       doctest::Contains("group size 5 does not divide input width 32"), ikv::Error);
  nothing_left();
}

TEST_CASE("an interrupted quantization leaves no artifact, and the previous file stays") {
  TempDir dir;
  const std::string path = dir.file("i.quant.safetensors");
  const model::Weights fp = tiny_model();
  {
    std::ofstream(path) << "the previous artifact";
  }
  model::Weights w = fp;
  CHECK_THROWS_WITH_AS(
      [&] {
        quant::QuantizedArtifactWriter out(w, exp::artifact_layout(exp::rtn_spec(4, 8)), path, {{"method", "rtn"}});
        exp::quantize_weights(w, exp::rtn_spec(4, 8), {}, nullptr, [&](int64_t l) {
          out.write_layer(w, l);
          CHECK(fs::exists(path + ".tmp"));
          if (l == 0) ikv::fail("interrupted after layer ", l);
        });
        out.finish(w);
      }(),
      doctest::Contains("interrupted after layer 0"), ikv::Error);
  CHECK(!fs::exists(path + ".tmp"));
  CHECK(file_bytes(path) == "the previous artifact");
  fs::remove(path);
  {  // Every layer written but never finished: still no file.
    model::Weights q = fp;
    quant::QuantizedArtifactWriter out(q, exp::artifact_layout(exp::rtn_spec(4, 8)), path, {});
    exp::quantize_weights(q, exp::rtn_spec(4, 8), {}, nullptr, [&](int64_t l) { out.write_layer(q, l); });
  }
  CHECK(!fs::exists(path));
  CHECK(!fs::exists(path + ".tmp"));
}
