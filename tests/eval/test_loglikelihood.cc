// The shared-context scorer against brute-force recomputation, and lm-eval's _encode_pair rules.
#include <cmath>

#include "eval/loglikelihood.h"
#include "intactkv/prefix.h"
#include "test_util.h"

using namespace ikv;

TEST_CASE("scorer with context reuse == brute force, with and without IntactKV, with truncation") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("testbed-26M"));
  model::Tokenizer tok(model::tokenizer_path_for(test::model_dir("testbed-26M")));
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

TEST_CASE("encode_pair follows lm-eval: trailing context spaces join the continuation") {
  if (test::data_root().empty()) return;
  model::Tokenizer tok(model::tokenizer_path_for(test::model_dir("testbed-26M")));
  auto [c1, k1] = eval::encode_pair(tok, "Answer: ", "red");
  auto [c2, k2] = eval::encode_pair(tok, "Answer:", " red");
  CHECK(c1 == c2);
  CHECK(k1 == k2);
  CHECK(c1 == tok.encode("Answer:"));
}
