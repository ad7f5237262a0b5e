// The packed, shared-context scorer against brute-force recomputation; its results bit for bit
// the same whatever the batching; lm-eval's _encode_pair rules.
#include <omp.h>

#include <cmath>
#include <cstring>

#include "eval/loglikelihood.h"
#include "eval/tasks.h"
#include "intactkv/prefix.h"
#include "io/error.h"
#include "test_util.h"

using namespace ikv;

namespace {

struct Testbed {
  model::Weights w = model::load_model(test::model_dir("testbed-26M"));
  std::unique_ptr<model::Tokenizer> tok = model::open_tokenizer(test::model_dir("testbed-26M"));
  engine::Engine eng{w};
};

// A task's first documents as ikv-eval loads them (MMLU: the given subjects, one shot to keep the
// test short).
std::vector<eval::TaskDoc> task_docs(const Testbed& m, const std::string& task, int64_t limit,
                                     std::vector<std::string> subjects = {}) {
  eval::TaskOptions to;
  to.data_root = test::data_root();
  to.limit = limit;
  to.subjects = std::move(subjects);
  to.num_fewshot = 1;
  to.count_tokens = [&](const std::string& s) { return static_cast<int64_t>(m.tok->encode(s).size()); };
  to.max_ctx_tokens = eval::mmlu_prompt_limit(2048, m.w.config.max_pos);
  return eval::load_task_docs(eval::find_task(task), to);
}

// Every request of the documents as the scorer answered it, in order, scored docs_per_batch
// documents per call.
std::vector<eval::LoglikResult> score_all(eval::LoglikelihoodScorer& scorer, const std::string& task,
                                          const std::vector<eval::TaskDoc>& docs, int64_t docs_per_batch) {
  std::vector<eval::LoglikResult> all;
  eval::score_items(eval::find_task(task), docs, [&](const std::vector<eval::LoglikRequest>& r) {
    std::vector<eval::LoglikResult> out = scorer.score(r);
    all.insert(all.end(), out.begin(), out.end());
    return out;
  }, docs_per_batch);
  return all;
}

bool same_bits(const std::vector<eval::LoglikResult>& a, const std::vector<eval::LoglikResult>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i].logprob, &b[i].logprob, sizeof(double)) != 0 || a[i].greedy != b[i].greedy ||
        a[i].n_tokens != b[i].n_tokens)
      return false;
  return true;
}

}  // namespace

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
      // One request per call, in reverse order: the same bits.
      eval::LoglikelihoodScorer single(eng, tok, opt, prefix);
      for (size_t i = reqs.size(); i-- > 0;) CHECK(same_bits(single.score({reqs[i]}), {fast[i]}));
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

TEST_CASE("packed scorer: every request's loglikelihood is the same bits whatever the batching, threads or split") {
  if (test::data_root().empty()) return;
  Testbed m;
  const intactkv::Prefix bos = intactkv::build_prefix(m.eng, {1});
  struct Case {
    const char* task;
    int64_t limit;
    std::vector<std::string> subjects;
  };
  const std::vector<Case> cases = {{"arc_easy", 8, {}},  {"winogrande", 6, {}},
                                   {"lambada_openai", 6, {}}, {"hellaswag", 4, {}},
                                   {"mmlu", 2, {"abstract_algebra", "anatomy"}}};
  for (bool intactkv : {false, true}) {
    eval::ScorerOptions opt;
    const intactkv::Prefix* prefix = nullptr;
    if (intactkv) opt.kv_bits = 4, prefix = &bos;  // KV quantization and a prefix on the second pass
    for (const Case& c : cases) {
      if (intactkv && c.task != std::string("arc_easy") && c.task != std::string("mmlu")) continue;
      CAPTURE(c.task);
      CAPTURE(intactkv);
      const std::vector<eval::TaskDoc> docs = task_docs(m, c.task, c.limit, c.subjects);
      eval::LoglikelihoodScorer ref_scorer(m.eng, *m.tok, opt, prefix);
      const std::vector<eval::LoglikResult> ref = score_all(ref_scorer, c.task, docs, 64);
      auto with = [&](int64_t per_batch, int64_t rows_per_forward) {
        eval::ScorerOptions o = opt;
        o.rows_per_forward = rows_per_forward;
        eval::LoglikelihoodScorer scorer(m.eng, *m.tok, o, prefix);
        return score_all(scorer, c.task, docs, per_batch);
      };
      // Batch sizes 1, 7 and 64 documents per call (64 above), and other forward sizes.
      CHECK(same_bits(with(1, 512), ref));
      CHECK(same_bits(with(7, 512), ref));
      if (!intactkv) {
        CHECK(same_bits(with(7, 128), ref));
        CHECK(same_bits(with(64, 1000), ref));
        // One thread instead of all (the kernels this process has built, run on one thread).
        const int threads = omp_get_max_threads();
        omp_set_num_threads(1);
        const std::vector<eval::LoglikResult> one = with(64, 512);
        omp_set_num_threads(threads);
        CHECK(same_bits(one, ref));
        // The same scorer again: now starting from what its last call left in the cache.
        CHECK(same_bits(score_all(ref_scorer, c.task, docs, 64), ref));
      }
      // Split in two parts scored by two scorers (as MPI ranks score document ranges).
      const size_t half = docs.size() / 2;
      eval::LoglikelihoodScorer s1(m.eng, *m.tok, opt, prefix), s2(m.eng, *m.tok, opt, prefix);
      std::vector<eval::LoglikResult> split =
          score_all(s1, c.task, std::vector<eval::TaskDoc>(docs.begin(), docs.begin() + half), 64);
      const std::vector<eval::LoglikResult> rest =
          score_all(s2, c.task, std::vector<eval::TaskDoc>(docs.begin() + half, docs.end()), 64);
      split.insert(split.end(), rest.begin(), rest.end());
      CHECK(same_bits(split, ref));
    }
  }
}

TEST_CASE("packed scorer == brute force on the nine tasks: each loglikelihood within fp32 rounding, the same metrics") {
  if (test::data_root().empty()) return;
  Testbed m;
  eval::ScorerOptions opt;
  for (const eval::TaskSpec& spec : eval::all_tasks()) {
    CAPTURE(spec.name);
    const bool mmlu = spec.name == "mmlu";
    const std::vector<eval::TaskDoc> docs =
        task_docs(m, spec.name, mmlu ? 2 : 5, mmlu ? std::vector<std::string>{"astronomy"} : std::vector<std::string>{});
    eval::LoglikelihoodScorer scorer(m.eng, *m.tok, opt);
    const std::vector<eval::LoglikResult> fast = score_all(scorer, spec.name, docs, 64);
    std::vector<eval::LoglikResult> slow;
    eval::score_items(spec, docs, [&](const std::vector<eval::LoglikRequest>& r) {
      std::vector<eval::LoglikResult> out = eval::score_brute_force(m.eng, *m.tok, r, opt);
      slow.insert(slow.end(), out.begin(), out.end());
      return out;
    });
    REQUIRE(fast.size() == slow.size());
    // The two compute the same fp32 operations, summed in other orders: the linears in 128-row
    // blocks (oneDNN's brgemm) against one call of the request's length (its run-time-M GEMM below
    // 128 rows), attention per row in AVX2 lanes against Eigen's. Each sum then differs by a few
    // ulps (~1e-6 relative over K = 1408); through 6 layers and a log-softmax over logits of
    // magnitude ~10 that is ~1e-5 nats per scored token. Tolerance: 5e-5 nats per continuation
    // token (the largest seen is below 1e-5 per token); a real difference (a wrong mask, slot or
    // position) moves a loglikelihood by far more than 1e-2.
    double worst = 0, worst_per_token = 0;
    for (size_t i = 0; i < fast.size(); ++i) {
      CHECK(fast[i].n_tokens == slow[i].n_tokens);
      CHECK(fast[i].greedy == slow[i].greedy);
      const double diff = std::fabs(fast[i].logprob - slow[i].logprob);
      CHECK(diff <= 5e-5 * slow[i].n_tokens);
      worst = std::max(worst, diff);
      worst_per_token = std::max(worst_per_token, diff / slow[i].n_tokens);
    }
    MESSAGE(spec.name << ": max |packed - brute force| = " << worst << " (" << worst_per_token << " per token)");
    // The task's metrics from either set of loglikelihoods (none of these documents is a near tie).
    auto metrics = [&](const std::vector<eval::LoglikResult>& results) {
      size_t next = 0;
      return eval::score_docs(spec, docs, [&](const std::vector<eval::LoglikRequest>& r) {
        std::vector<eval::LoglikResult> out(results.begin() + next, results.begin() + next + r.size());
        next += r.size();
        return out;
      }).metrics;
    };
    const auto a = metrics(fast), b = metrics(slow);
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].name == b[i].name);
      if (a[i].name == "perplexity")
        CHECK(a[i].value == doctest::Approx(b[i].value).epsilon(1e-3));
      else
        CHECK(a[i].value == b[i].value);
    }
  }
}

TEST_CASE("KIVI keys and protected sinks look across a sequence: the scorer runs each request alone, as brute force") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("testbed-26M"));
  const auto tok = model::open_tokenizer(test::model_dir("testbed-26M"));
  const std::vector<eval::LoglikRequest> reqs = {
      {"Question: What is the color of the sky?\nAnswer:", " blue"},
      {"Question: What is the color of the sky?\nAnswer:", " green as grass"},
      {"The capital of France is", " Paris"},
  };
  engine::EngineOptions kivi, sinks;
  kivi.kv.keys = engine::KeyQuant::per_channel_prerope, kivi.kv.key_group = 4, kivi.kv.residual = 2;
  sinks.kv.protect_sinks = true;
  for (const engine::EngineOptions& o : {kivi, sinks}) {
    engine::Engine eng(w, o);
    eval::ScorerOptions opt;
    opt.kv_bits = 4;
    CHECK_FALSE(eng.packs_rows(4));
    CHECK(eng.packs_rows(16));
    eval::LoglikelihoodScorer scorer(eng, *tok, opt);
    CHECK(same_bits(scorer.score(reqs), eval::score_brute_force(eng, *tok, reqs, opt)));
    CHECK(scorer.stats().requests == 3);
    // One request per call: the same bits (nothing depends on the other requests).
    eval::LoglikelihoodScorer single(eng, *tok, opt);
    CHECK(same_bits(single.score({reqs[2]}), {scorer.score({reqs[2]})[0]}));
    // A packed forward refuses such an engine.
    engine::KVCache cache = engine::make_kv_cache(w.config, 8, 4);
    kernels::PackedRows rows;
    rows.add_segment(0, 0, {});
    const int32_t t = 1;
    CHECK_THROWS_AS(eng.forward_packed(cache, &t, rows, {}, nullptr), ikv::Error);
  }
}
