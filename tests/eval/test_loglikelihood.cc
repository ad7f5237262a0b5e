// The shared-context scorer against brute-force recomputation, and lm-eval's _encode_pair rules.
#include <cmath>

#include "eval/loglikelihood.h"
#include "intactkv/prefix.h"
#include "io/error.h"
#include "test_util.h"

using namespace ikv;

TEST_CASE("scorer with context reuse == brute force, with and without IntactKV, with truncation") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("testbed-26M"));
  const auto tokenizer = model::open_tokenizer(test::model_dir("testbed-26M"));
  const model::Tokenizer& tok = *tokenizer;
  engine::Engine eng(w);
  std::vector<eval::LoglikRequest> reqs = {
      {"Question: What is the color of the sky?\nAnswer:", " blue"},
      {"Question: What is the color of the sky?\nAnswer:", " green as grass"},
      {"Question: What is the color of the sky?\nAnswer: ", "red"},  // trailing space moves over
      {"The capital of France is", " Paris"},
      {"", "Hello world"},
  };
  intactkv::Prefix bos = intactkv::build_prefix(eng, {1});
  for (int64_t max_ctx : {0, 6}) {
    for (const intactkv::Prefix* prefix : std::vector<const intactkv::Prefix*>{nullptr, &bos}) {
      eval::ScorerOptions opt;
      opt.max_ctx = max_ctx;
      eval::LoglikelihoodScorer scorer(eng, tok, opt, prefix);
      auto fast = scorer.score(reqs);
      auto slow = eval::score_brute_force(eng, tok, reqs, opt, prefix);
      REQUIRE(fast.size() == slow.size());
      for (size_t i = 0; i < fast.size(); ++i) {
        CHECK(fast[i].n_tokens == slow[i].n_tokens);
        CHECK(fast[i].greedy == slow[i].greedy);
        // Same tokens, different GEMM batch shapes: fp32 rounding only.
        CHECK(std::fabs(fast[i].logprob - slow[i].logprob) < 1e-3);
      }
      CHECK(scorer.stats().tokens_evaluated < scorer.stats().tokens_naive);
    }
  }
}

TEST_CASE("bos never: requests run without <bos>, an empty context is the end-of-text token") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("testbed-26M"));
  const auto tokenizer = model::open_tokenizer(test::model_dir("testbed-26M"));
  const model::Tokenizer& tok = *tokenizer;
  engine::Engine eng(w);
  const std::vector<eval::LoglikRequest> reqs = {{"The capital of France is", " Paris"}, {"", "Hello world"}};
  eval::ScorerOptions no_bos;
  no_bos.bos = false;
  eval::LoglikelihoodScorer scorer(eng, tok, no_bos);
  const auto got = scorer.score(reqs);
  // By hand: context tokens (or <eos> for an empty context) + continuation, one forward, no <bos>.
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto [ctx, cont] = eval::encode_pair(tok, reqs[i].context, reqs[i].continuation);
    if (ctx.empty()) ctx = {w.config.eos_id};
    std::vector<int32_t> input = ctx;
    input.insert(input.end(), cont.begin(), cont.end() - 1);
    engine::KVCache cache = engine::make_kv_cache(w.config, static_cast<int64_t>(input.size()), 16);
    std::vector<float> logits;
    const int64_t first = static_cast<int64_t>(ctx.size()) - 1;
    eng.forward(cache, input.data(), static_cast<int64_t>(input.size()), &logits, first);
    double lp = 0;
    for (size_t t = 0; t < cont.size(); ++t) {
      const float* row = &logits[t * w.config.vocab];
      double mx = row[0], sum = 0;
      for (int64_t j = 1; j < w.config.vocab; ++j) mx = std::max<double>(mx, row[j]);
      for (int64_t j = 0; j < w.config.vocab; ++j) sum += std::exp(row[j] - mx);
      lp += row[cont[t]] - mx - std::log(sum);
    }
    CHECK(std::fabs(got[i].logprob - lp) < 1e-3);
  }
  // The scorer matches its brute-force twin without <bos> too, and differs from the <bos> scores.
  const auto slow = eval::score_brute_force(eng, tok, reqs, no_bos);
  const auto with_bos = eval::LoglikelihoodScorer(eng, tok, eval::ScorerOptions{}).score(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    CHECK(std::fabs(got[i].logprob - slow[i].logprob) < 1e-3);
    CHECK(std::fabs(got[i].logprob - with_bos[i].logprob) > 1e-3);
  }
  // An IntactKV prefix stands in for <bos>: refused without one.
  intactkv::Prefix bos = intactkv::build_prefix(eng, {1});
  CHECK_THROWS_WITH_AS(eval::LoglikelihoodScorer(eng, tok, no_bos, &bos), doctest::Contains("<bos>"), Error);
}

TEST_CASE("encode_pair follows lm-eval: trailing context spaces join the continuation") {
  if (test::data_root().empty()) return;
  const auto tokenizer = model::open_tokenizer(test::model_dir("testbed-26M"));
  const model::Tokenizer& tok = *tokenizer;
  auto [c1, k1] = eval::encode_pair(tok, "Answer: ", "red");
  auto [c2, k2] = eval::encode_pair(tok, "Answer:", " red");
  CHECK(c1 == c2);
  CHECK(k1 == k2);
  CHECK(c1 == tok.encode("Answer:"));
}
