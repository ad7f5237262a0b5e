// Models at the real families' shapes, as stored: synthetic checkpoints (model/synth.h) of every
// family run with finite logits, and bf16 weights are computed on where they are mapped.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "engine/forward.h"
#include "model/synth.h"
#include "model/weights.h"
#include "test_util.h"

using namespace ikv;
namespace fs = std::filesystem;

TEST_CASE("a tiny synthetic checkpoint of every family runs with finite logits, fp32 and bf16 compute") {
  for (const std::string& shape : model::synth_shapes()) {
    CAPTURE(shape);
    model::SynthOptions opt;
    opt.shape = shape;
    opt.tiny = true;
    opt.dtype = shape == "llama2-7b" ? "fp16" : "bf16";
    const fs::path dir = fs::temp_directory_path() / ("ikv-test-synth-run-" + shape);
    fs::remove_all(dir);
    model::write_synth_checkpoint(dir.string(), opt);
    model::Weights w = model::load_model(dir.string());
    std::vector<int32_t> ids = w.config.bos_tokens();  // none for Qwen3
    for (int32_t t : {100, 200, 300, 400, 500, 600}) ids.push_back(t);
    for (bool bf16 : {false, true}) {
      if (bf16) model::convert_linears_to_bf16(w);
      engine::KVCache cache = engine::make_kv_cache(w.config, 16);
      std::vector<float> logits;
      engine::Engine(w).forward(cache, ids.data(), static_cast<int64_t>(ids.size()), &logits);
      CHECK(logits.size() == ids.size() * static_cast<size_t>(w.config.vocab));
      CHECK(std::all_of(logits.begin(), logits.end(), [](float v) { return std::isfinite(v); }));
    }
    fs::remove_all(dir);
  }
}

TEST_CASE("bf16 weights are used where they are mapped; a tied head shares the embedding's storage") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("tiny-llama3"));  // bf16, tied embeddings
  REQUIRE(w.config.tied_embeddings);
  REQUIRE(w.embed.is_half());
  const auto* head = std::get_if<kernels::DenseHalf>(&w.lm_head.weight);
  REQUIRE(head);
  CHECK(head->w.data == w.embed.half.data);
  CHECK(head->w.type == kernels::Half::kBf16);
  const auto* q = std::get_if<kernels::DenseHalf>(&w.layers[0].q.weight);
  REQUIRE(q);
  const uint16_t* q_data = q->w.data;
  // The same model with every weight expanded to fp32 computes the same logits, bit for bit.
  model::Weights f = w;
  for (auto& nl : model::named_linears(f)) kernels::expand_to_f32(*nl.linear);
  kernels::expand_to_f32(f.lm_head);
  f.embed.expand_to_f32();
  CHECK(std::get_if<kernels::DenseHalf>(&w.layers[0].q.weight));  // copies share storage, expand their own
  std::vector<int32_t> ids = {128000, 9906, 1917, 13, 358, 1097};
  auto logits = [&](const model::Weights& m) {
    engine::KVCache kv = engine::make_kv_cache(m.config, 8);
    std::vector<float> out;
    engine::Engine(m).forward(kv, ids.data(), static_cast<int64_t>(ids.size()), &out);
    return out;
  };
  CHECK(logits(w) == logits(f));
  // bf16 compute on bf16 weights: no copy.
  model::convert_linears_to_bf16(w);
  const auto& qb = std::get<kernels::DenseHalf>(w.layers[0].q.weight);
  CHECK(qb.w.data == q_data);
  CHECK(qb.compute == kernels::Activations::kBf16);
  CHECK(std::get<kernels::DenseHalf>(w.lm_head.weight).w.data == w.embed.half.data);
}
