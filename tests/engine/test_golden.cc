// The engine against Hugging Face transformers' logits (golden/, float32 eager attention).
#include <cmath>
#include <cstring>

#include "engine/forward.h"
#include "io/safetensors.h"
#include "model/tokenizer.h"
#include "test_util.h"

using namespace ikv;

namespace {

struct GoldenCase {
  const char* model;
  const char* golden;
};

void check_golden(const GoldenCase& gc) {
  const std::string name = gc.model;
  const std::string root = test::data_root();
  if (root.empty()) return;
  model::Weights w = model::load_model(test::model_dir(gc.model));
  io::SafetensorsFile golden(root + "/golden/" + gc.golden);
  const auto& ids_view = golden.get("input_ids");
  std::vector<int32_t> ids(ids_view.numel());
  std::memcpy(ids.data(), ids_view.data, ids_view.nbytes);
  std::vector<float> expected = io::to_f32(golden.get("logits"), golden.path());

  // The golden input is <bos> + the tokenizer's encoding of WikiText-2 test: our tokenizer must agree.
  const auto tokenizer = model::open_tokenizer(test::model_dir(gc.model));
  const model::Tokenizer& tok = *tokenizer;
  std::string text = io::read_text_file(root + "/datasets/wikitext-2-raw/wiki.test.raw");
  std::vector<int32_t> enc = tok.encode(text.substr(0, 4000));
  CHECK(ids[0] == w.config.bos_id);
  for (size_t i = 1; i < ids.size(); ++i) REQUIRE(enc[i - 1] == ids[i]);

  engine::Engine eng(w);
  engine::KVCache cache = engine::make_kv_cache(w.config, ids.size());
  std::vector<float> logits;
  eng.forward(cache, ids.data(), ids.size(), &logits);
  REQUIRE(logits.size() == expected.size());
  double max_err = 0;
  for (size_t i = 0; i < logits.size(); ++i) max_err = std::max(max_err, double(std::fabs(logits[i] - expected[i])));
  MESSAGE(name << ": max |logit - golden| = " << max_err);
  // FP32 with different summation orders (oneDNN vs PyTorch's MKL): 1e-4 is ~10 ulps of logits of
  // magnitude ~10, the level HF itself varies by between backends.
  CHECK(max_err <= 1e-4);
}

}  // namespace

TEST_CASE("testbed-26M logits match HF transformers") { check_golden({"testbed-26M", "testbed-wikitext2-golden.safetensors"}); }
TEST_CASE("stories260K logits match HF transformers") { check_golden({"stories260K", "stories260K-wikitext2-golden.safetensors"}); }
