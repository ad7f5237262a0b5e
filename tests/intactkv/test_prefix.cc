// IntactKV on a full-precision model changes nothing: the prefix KV is exactly what the model
// would compute itself. And the prefix file round-trips and refuses the wrong model.
#include <cmath>
#include <filesystem>

#include "eval/perplexity.h"
#include "intactkv/prefix.h"
#include "intactkv/prefix_file.h"
#include "intactkv/prefix_spec.h"
#include "io/error.h"
#include "io/mapped_file.h"
#include "model/tokenizer.h"
#include "test_util.h"

using namespace ikv;

TEST_CASE("IntactKV on the FP model leaves every logit unchanged (bos and system-prompt prefixes)") {
  if (test::data_root().empty()) return;
  // testbed-26M (LLaMA-2: <bos>, Vicuna's system prompt) and tiny-qwen3 (no BOS: its ChatML
  // system turn; q/k norms in the layer).
  struct Case {
    const char* model;
    std::vector<const char*> specs;
    const char* text;
  };
  for (const Case& c : {Case{"testbed-26M", {"bos", "vicuna"}, " USER: Tell me about the sea. ASSISTANT: The sea is large."},
                        Case{"tiny-qwen3", {"system"}, "<|im_start|>user\nTell me about the sea.<|im_end|>\n"}}) {
    model::Weights w = model::load_model(test::model_dir(c.model));
    const auto tokenizer = model::open_tokenizer(test::model_dir(c.model));
    const model::Tokenizer& tok = *tokenizer;
    engine::Engine eng(w);
    for (const char* spec : c.specs) {
      std::vector<int32_t> pre = intactkv::prefix_tokens(spec, tok, w.config.bos_id);
      intactkv::Prefix prefix = intactkv::build_prefix(eng, pre);
      std::vector<int32_t> input = pre;
      for (int32_t t : tok.encode(c.text)) input.push_back(t);
      const int64_t n = input.size(), P = prefix.size();
      // Plain: the whole input at once. IntactKV: prefix installed, only the rest is run.
      engine::KVCache plain = engine::make_kv_cache(w.config, n), ikv = engine::make_kv_cache(w.config, n);
      std::vector<float> a, b;
      eng.forward(plain, input.data(), n, &a, P);
      intactkv::install_prefix(ikv, prefix, eng);
      CHECK(intactkv::matched_prefix_length(prefix, input) == P);
      eng.forward(ikv, input.data() + P, n - P, &b, 0);
      REQUIRE(a.size() == b.size());
      double err = 0;
      for (size_t i = 0; i < a.size(); ++i) err = std::max(err, double(std::fabs(a[i] - b[i])));
      const std::string what = std::string(c.model) + " " + spec;
      MESSAGE(what << ": max |logit diff| = " << err);
      // Same weights, same arithmetic; only GEMM blocking differs (M = P vs M = n): fp32 rounding.
      CHECK(err < 1e-4);
    }
  }
}

TEST_CASE("perplexity with IntactKV_[B] on the FP model equals plain perplexity") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("stories260K"));
  const auto tokenizer = model::open_tokenizer(test::model_dir("stories260K"));
  const model::Tokenizer& tok = *tokenizer;
  engine::Engine eng(w);
  auto stream = eval::perplexity_stream(tok, io::read_text_file(test::data_root() + "/README-sample.txt"), 1);
  eval::PerplexityOptions opt;
  opt.ctx = 128;
  opt.progress = false;
  intactkv::Prefix bos = intactkv::build_prefix(eng, {1});
  auto plain = eval::perplexity(eng, stream, opt);
  auto with = eval::perplexity(eng, stream, opt, &bos);
  CHECK(plain.tokens_scored == with.tokens_scored);
  CHECK(std::fabs(plain.ppl - with.ppl) < 1e-5 * plain.ppl);
}

TEST_CASE("prefix file round trip; another model or shape is refused") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("stories260K"));
  const auto tokenizer = model::open_tokenizer(test::model_dir("stories260K"));
  const model::Tokenizer& tok = *tokenizer;
  engine::Engine eng(w);
  intactkv::Prefix p = intactkv::build_prefix(eng, intactkv::prefix_tokens("prompt:Once upon a time", tok, 1));
  p.settings["prefix"] = "prompt:Once upon a time";
  const std::string path = (std::filesystem::temp_directory_path() / "ikv-test.ikv.safetensors").string();
  intactkv::save_prefix(p, w.config, path);
  intactkv::Prefix q = intactkv::load_prefix(path, w.config, w.fingerprint);
  CHECK(q.tokens == p.tokens);
  CHECK(q.key == p.key);
  CHECK(q.value == p.value);
  CHECK(q.origin == "fp");
  CHECK(q.settings.at("prefix") == "prompt:Once upon a time");
  CHECK_THROWS_WITH_AS(intactkv::load_prefix(path, w.config, "0123456789abcdef"),
                       doctest::Contains("not this model"), Error);
  model::Config other = w.config;
  other.n_kv_heads = 8;
  CHECK_THROWS_WITH_AS(intactkv::load_prefix(path, other, w.fingerprint), doctest::Contains("has shape"), Error);
  // fp16 storage: values within fp16 rounding.
  intactkv::save_prefix(p, w.config, path, /*fp16=*/true);
  q = intactkv::load_prefix(path, w.config, w.fingerprint);
  for (size_t i = 0; i < p.key[0].size(); ++i) REQUIRE(std::fabs(q.key[0][i] - p.key[0][i]) <= 1e-3 * (1 + std::fabs(p.key[0][i])));
}

TEST_CASE("prefix specs") {
  if (test::data_root().empty()) return;
  const auto tokenizer = model::open_tokenizer(test::model_dir("testbed-26M"));
  const model::Tokenizer& tok = *tokenizer;
  CHECK(intactkv::prefix_tokens("bos", tok, 1) == std::vector<int32_t>{1});
  auto v = intactkv::prefix_tokens("vicuna", tok, 1);
  CHECK(v.size() > 20);
  CHECK(intactkv::prefix_tokens("vicuna", tok, 1, 5) == std::vector<int32_t>(v.begin(), v.begin() + 5));
  CHECK_THROWS_WITH_AS(intactkv::prefix_tokens("bogus", tok, 1), doctest::Contains("not one of bos"), Error);
}
