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

namespace {

// tiny-{llama3,mistral,qwen2,qwen3}: 64 tokens as one sequence; logits at 4 positions and the
// per-token NLL (golden/README.md). They exercise llama3 RoPE scaling and tied embeddings
// (llama3), the sliding window (mistral: 32 < 64 tokens), q/k/v biases and no BOS (qwen2), and
// the per-head q/k norms with an explicit head_dim (qwen3).
void check_family_golden(const std::string& name) {
  const std::string root = test::data_root();
  if (root.empty()) return;
  model::Weights w = model::load_model(test::model_dir(name));
  io::SafetensorsFile golden(root + "/golden/" + name + "-golden.safetensors");
  auto int64s = [&](const char* t) {
    const auto& v = golden.get(t);
    std::vector<int64_t> out(v.numel());
    std::memcpy(out.data(), v.data, v.nbytes);
    return out;
  };
  const std::vector<int64_t> ids64 = int64s("input_ids"), positions = int64s("positions");
  const std::vector<int32_t> ids(ids64.begin(), ids64.end());
  const std::vector<float> expected = io::to_f32(golden.get("logits"), golden.path());
  const std::vector<float> nll = io::to_f32(golden.get("nll"), golden.path());
  const int64_t n = ids.size(), V = w.config.vocab;

  engine::Engine eng(w);
  engine::KVCache cache = engine::make_kv_cache(w.config, n);
  std::vector<float> logits;
  eng.forward(cache, ids.data(), n, &logits);
  REQUIRE(static_cast<int64_t>(logits.size()) == n * V);
  double max_err = 0, max_nll_err = 0;
  for (size_t p = 0; p < positions.size(); ++p)
    for (int64_t i = 0; i < V; ++i)
      max_err = std::max(max_err, double(std::fabs(logits[positions[p] * V + i] - expected[p * V + i])));
  for (int64_t t = 0; t + 1 < n; ++t) {
    const float* row = &logits[t * V];
    double mx = row[0], sum = 0;
    for (int64_t i = 0; i < V; ++i) mx = std::max(mx, double(row[i]));
    for (int64_t i = 0; i < V; ++i) sum += std::exp(double(row[i]) - mx);
    max_nll_err = std::max(max_nll_err, std::fabs(mx + std::log(sum) - row[ids[t + 1]] - nll[t]));
  }
  MESSAGE(name << ": max |logit - golden| = " << max_err << ", max |nll - golden| = " << max_nll_err);
  CHECK(max_err <= 1e-4);
  CHECK(max_nll_err <= 1e-4);
}

}  // namespace

TEST_CASE("tiny-llama3 (llama3 RoPE scaling, tied embeddings) matches HF transformers") { check_family_golden("tiny-llama3"); }
TEST_CASE("tiny-mistral (sliding window) matches HF transformers") { check_family_golden("tiny-mistral"); }
TEST_CASE("tiny-qwen2 (q/k/v biases, no BOS) matches HF transformers") { check_family_golden("tiny-qwen2"); }
TEST_CASE("tiny-qwen3 (q/k norms, head_dim) matches HF transformers") { check_family_golden("tiny-qwen3"); }
