#include "bench_tasks.h"

#include <omp.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "eval/loglikelihood.h"
#include "eval/perplexity.h"
#include "eval/tasks.h"
#include "exp/config.h"
#include "exp/model_setup.h"
#include "io/mapped_file.h"
#include "model/synth.h"

using namespace ikv;

namespace {

// Wall and CPU seconds (all threads of this process) since a start.
struct Clock {
  std::chrono::steady_clock::time_point wall = std::chrono::steady_clock::now();
  double cpu = cpu_seconds();
  static double cpu_seconds() {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
  }
  double wall_seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - wall).count(); }
  double cpu_seconds_since() const { return cpu_seconds() - cpu; }
};

struct Setting {
  const char* label;
  int64_t ppl_windows;  // ctx 512 windows measured before and after each task
  int64_t limit;        // documents per task
  int64_t mmlu_limit;   // questions per MMLU subject
  std::vector<std::string> mmlu_subjects;  // empty = all 57
};

struct Throughput {
  double wall = 0, cpu = 0;  // tokens per wall second, per CPU second
};

// Perplexity throughput over `windows` windows of 512 tokens (what `ikv-eval ppl` computes).
Throughput ppl_throughput(const engine::Engine& eng, const std::vector<int32_t>& stream, int64_t windows) {
  eval::PerplexityOptions po;
  po.ctx = 512, po.windows = windows, po.progress = false;
  const Clock t;
  const eval::PerplexityResult r = eval::perplexity(eng, stream, po);
  const double tokens = r.tokens_per_second * t.wall_seconds();  // the forward tokens it ran
  return {r.tokens_per_second, tokens / t.cpu_seconds_since()};
}

// Each task's scoring between two perplexity measurements, so that the ratio compares the two
// under the same load: other jobs share the machine and its load moves within minutes. The ratio
// is given on wall time (against the mean of the two perplexity runs) and on CPU time (the
// process's threads' seconds: what the shared machine's load disturbs least).
void bench_model(bool json, const std::string& data_root, const Setting& s, const model::Weights& w,
                   const model::Tokenizer& tok, const std::vector<int32_t>& stream) {
  engine::Engine eng(w);
  ppl_throughput(eng, stream, 1);  // warm-up: JIT and page faults
  std::printf("\n%s, FP32, %d threads; perplexity: ctx 512, %lld window(s) before and after each task\n", s.label,
              omp_get_max_threads(), (long long)s.ppl_windows);
  std::printf("%-16s %6s %9s %11s %11s %8s %8s %9s %9s %7s %8s %8s %7s\n", "task", "docs", "requests", "tokens run",
              "no reuse", "saving", "seconds", "tokens/s", "ppl tok/s", "vs ppl", "tok/cpu-s", "ppl", "vs ppl");
  double worst_wall = 1e300, worst_cpu = 1e300;
  for (const eval::TaskSpec& spec : eval::all_tasks()) {
    eval::LoglikelihoodScorer scorer(eng, tok, {});
    eval::TaskOptions to;
    to.data_root = data_root;
    const bool mmlu = spec.name == "mmlu";
    to.limit = mmlu ? s.mmlu_limit : s.limit;
    to.subjects = mmlu ? s.mmlu_subjects : std::vector<std::string>{};
    to.count_tokens = [&](const std::string& t) { return scorer.count_tokens(t); };
    to.max_ctx_tokens = eval::mmlu_prompt_limit(exp::kMmluMaxCtx, scorer.max_ctx());
    const std::vector<eval::TaskDoc> docs = eval::load_task_docs(spec, to);
    const Throughput before = ppl_throughput(eng, stream, s.ppl_windows);
    // Scoring alone, as perplexity's tokens/s leaves out reading and tokenizing the text.
    const Clock t;
    eval::score_docs(spec, docs, [&](const std::vector<eval::LoglikRequest>& r) { return scorer.score(r); },
                     to.docs_per_batch);
    const double secs = t.wall_seconds(), cpu = t.cpu_seconds_since();
    const Throughput after = ppl_throughput(eng, stream, s.ppl_windows);
    const Throughput ppl{(before.wall + after.wall) / 2, (before.cpu + after.cpu) / 2};
    const eval::ScorerStats& st = scorer.stats();
    const double tps = st.tokens_evaluated / secs, tpc = st.tokens_evaluated / cpu;
    const double saving = double(st.tokens_naive) / st.tokens_evaluated;
    worst_wall = std::min(worst_wall, tps / ppl.wall), worst_cpu = std::min(worst_cpu, tpc / ppl.cpu);
    std::printf("%-16s %6zu %9lld %11lld %11lld %7.2fx %8.2f %9.0f %9.0f %6.2fx %9.0f %8.0f %6.2fx\n", spec.name.c_str(),
                docs.size(), (long long)st.requests, (long long)st.tokens_evaluated, (long long)st.tokens_naive, saving,
                secs, tps, ppl.wall, tps / ppl.wall, tpc, ppl.cpu, tpc / ppl.cpu);
    std::fflush(stdout);
    if (json)
      std::printf("%s\n", nlohmann::json({{"bench", "scorer"}, {"model", s.label}, {"task", spec.name},
                                          {"threads", omp_get_max_threads()}, {"docs", docs.size()},
                                          {"requests", st.requests}, {"tokens_evaluated", st.tokens_evaluated},
                                          {"tokens_naive", st.tokens_naive}, {"saving", saving}, {"seconds", secs},
                                          {"cpu_seconds", cpu}, {"tokens_per_second", tps},
                                          {"ppl_tokens_per_second", ppl.wall}, {"over_ppl", tps / ppl.wall},
                                          {"tokens_per_cpu_second", tpc}, {"ppl_tokens_per_cpu_second", ppl.cpu},
                                          {"over_ppl_cpu", tpc / ppl.cpu}})
                              .dump()
                              .c_str());
  }
  std::printf("lowest tasks / ppl ratio: %.2fx on wall time, %.2fx on CPU time (target >= 0.80x)\n", worst_wall,
              worst_cpu);
}

}  // namespace

int bench_tasks(bool json, const std::string& data_root, const std::string& which) {
  exp::LoadedModel m = exp::load_model_verified(data_root, "testbed-26M");
  const std::string text = io::read_text_file(exp::resolve_text_dataset(data_root, "wikitext2")).substr(0, 200000);
  std::printf("\nLoglikelihood scorer against perplexity, same engine, same run (tokens run = forward rows)\n");
  if (which != "1b")
    bench_model(json, data_root, {"testbed-26M", 2, 100, 2, {}}, m.weights, *m.tokenizer,
                eval::perplexity_stream(*m.tokenizer, text, m.weights.config.bos_id));
  // A 1B-class model: LLaMA-2-7B's widths (the LLaMA-2 tokenizer) with 4 of its 32 layers, 1.07 B
  // parameters of random bf16 weights as `ikv-eval synth` writes them, computed in fp32 from the
  // stored bf16 (as a real bf16 checkpoint runs). Written to a temporary folder, deleted after.
  if (which == "testbed") return 0;
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("ikv-bench-tasks-" + std::to_string(::getpid()));
  model::SynthOptions so;
  so.shape = "llama2-7b", so.layers = 4, so.data_root = data_root;
  model::write_synth_checkpoint(dir.string(), so);
  try {
    exp::LoadedModel big = exp::load_model_verified(data_root, dir.string());
    bench_model(json, data_root, {"llama2-7b shape, 4 layers (1.07B, random bf16)", 1, 64, 16, {"high_school_geography"}},
                big.weights, *big.tokenizer, eval::perplexity_stream(*big.tokenizer, text, big.weights.config.bos_id));
  } catch (...) {
    std::filesystem::remove_all(dir);
    throw;
  }
  std::filesystem::remove_all(dir);
  return 0;
}
