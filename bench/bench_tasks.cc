#include "bench_tasks.h"

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "eval/loglikelihood.h"
#include "eval/tasks.h"
#include "exp/model_setup.h"

using namespace ikv;

int bench_tasks(bool json, const std::string& data_root) {
  exp::LoadedModel m = exp::load_model_verified(data_root, "testbed-26M");
  engine::Engine eng(m.weights);
  std::printf("\nLoglikelihood scorer, testbed-26M FP32: context reuse (first 100 items per task; MMLU 2 per subject)\n");
  std::printf("%-16s %8s %14s %14s %8s %12s\n", "task", "requests", "tokens run", "tokens naive", "saving", "tokens/s");
  for (const char* task : {"arc_easy", "hellaswag", "winogrande", "piqa", "mmlu"}) {
    eval::LoglikelihoodScorer scorer(eng, *m.tokenizer, {});
    eval::TaskOptions to;
    to.data_root = data_root;
    to.limit = std::string(task) == "mmlu" ? 2 : 100;
    to.count_tokens = [&](const std::string& s) { return scorer.count_tokens(s); };
    to.max_ctx_tokens = scorer.max_ctx();
    const auto t0 = std::chrono::steady_clock::now();
    eval::run_task(eval::find_task(task), to, [&](const std::vector<eval::LoglikRequest>& r) { return scorer.score(r); });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const eval::ScorerStats& s = scorer.stats();
    const double saving = double(s.tokens_naive) / s.tokens_evaluated;
    std::printf("%-16s %8lld %14lld %14lld %7.2fx %12.0f\n", task, (long long)s.requests, (long long)s.tokens_evaluated,
                (long long)s.tokens_naive, saving, s.tokens_evaluated / secs);
    if (json)
      std::printf("%s\n", nlohmann::json({{"bench", "scorer"}, {"task", task}, {"requests", s.requests},
                                          {"tokens_evaluated", s.tokens_evaluated}, {"tokens_naive", s.tokens_naive},
                                          {"saving", saving}, {"tokens_per_second", s.tokens_evaluated / secs}})
                              .dump()
                              .c_str());
  }
  return 0;
}
