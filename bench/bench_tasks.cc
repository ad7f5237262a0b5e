#include "bench_tasks.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "eval/loglikelihood.h"
#include "eval/perplexity.h"
#include "eval/tasks.h"
#include "exp/config.h"
#include "exp/model_setup.h"
#include "io/mapped_file.h"

using namespace ikv;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// n values uniform in ±sd·√3 (variance sd²) from a counter-based hash: fast enough for a billion
// weights, the same on every run. Only the shapes matter for throughput; the values keep the
// activations finite.
std::vector<float> random_values(int64_t n, uint64_t seed, float sd) {
  std::vector<float> v(n);
  const float a = sd * std::sqrt(3.0f);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i);  // splitmix64
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    v[i] = a * (static_cast<float>(x >> 40) * (2.0f / 16777216.0f) - 1.0f);
  }
  return v;
}

// A LLaMA of shape c with random weights: linears of variance 1/in, unit norms, untied head.
model::Weights synthetic_model(const model::Config& c) {
  model::Weights w;
  w.config = c;
  uint64_t seed = 1;
  auto lin = [&](int64_t out, int64_t in) {
    return kernels::make_dense(random_values(out * in, seed++, 1.0f / std::sqrt(float(in))), out, in);
  };
  w.embed = random_values(c.vocab * c.dim, seed++, 1.0f);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    model::LayerWeights L;
    L.attn_norm.assign(c.dim, 1.0f), L.ffn_norm.assign(c.dim, 1.0f);
    L.q = lin(c.q_dim(), c.dim), L.k = lin(c.kv_dim(), c.dim), L.v = lin(c.kv_dim(), c.dim), L.o = lin(c.dim, c.q_dim());
    L.gate = lin(c.hidden, c.dim), L.up = lin(c.hidden, c.dim), L.down = lin(c.dim, c.hidden);
    w.layers.push_back(std::move(L));
  }
  w.final_norm.assign(c.dim, 1.0f);
  w.lm_head = lin(c.vocab, c.dim);
  w.source = "synthetic";
  w.fingerprint = "synthetic";
  return w;
}

// TinyLlama-1.1B's shape (LLaMA-2 architecture, GQA 32/4), vocab 32000.
model::Config one_b_shape() {
  model::Config c;
  c.dim = 2048, c.hidden = 5632, c.n_layers = 22, c.n_heads = 32, c.n_kv_heads = 4, c.head_dim = 64;
  c.vocab = 32000, c.max_pos = 2048;
  return c;
}

struct Setting {
  const char* label;
  int64_t ppl_windows;  // ctx 512 windows measured next to each task
  int64_t limit;        // documents per task
  int64_t mmlu_limit;   // questions per MMLU subject
  std::vector<std::string> mmlu_subjects;  // empty = all 57
};

// Perplexity throughput over `windows` windows of 512 tokens (what `ikv-eval ppl` reports).
double ppl_tokens_per_second(const engine::Engine& eng, const std::vector<int32_t>& stream, int64_t windows) {
  eval::PerplexityOptions po;
  po.ctx = 512, po.windows = windows, po.progress = false;
  return eval::perplexity(eng, stream, po).tokens_per_second;
}

// Each task's scoring next to a perplexity measurement taken just before it, so that the ratio
// compares the two under the same load (other jobs share the machine).
double bench_model(bool json, const std::string& data_root, const Setting& s, const model::Weights& w,
                   const model::Tokenizer& tok, const std::vector<int32_t>& stream) {
  engine::Engine eng(w);
  ppl_tokens_per_second(eng, stream, 1);  // warm-up: JIT and page faults
  std::printf("\n%s, FP32, %d threads; perplexity: ctx 512, %lld window(s) before each task\n", s.label,
              omp_get_max_threads(), (long long)s.ppl_windows);
  std::printf("%-16s %6s %9s %11s %11s %8s %8s %10s %10s %8s\n", "task", "docs", "requests", "tokens run", "no reuse",
              "saving", "seconds", "tokens/s", "ppl tok/s", "vs ppl");
  double worst = 1e300;
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
    const double ppl_tps = ppl_tokens_per_second(eng, stream, s.ppl_windows);
    // Scoring alone, as perplexity's tokens/s leaves out reading and tokenizing the text.
    const auto t0 = std::chrono::steady_clock::now();
    eval::score_docs(spec, docs, [&](const std::vector<eval::LoglikRequest>& r) { return scorer.score(r); },
                     to.docs_per_batch);
    const double secs = seconds_since(t0);
    const eval::ScorerStats& st = scorer.stats();
    const double tps = st.tokens_evaluated / secs, saving = double(st.tokens_naive) / st.tokens_evaluated;
    worst = std::min(worst, tps / ppl_tps);
    std::printf("%-16s %6zu %9lld %11lld %11lld %7.2fx %8.2f %10.0f %10.0f %7.2fx\n", spec.name.c_str(), docs.size(),
                (long long)st.requests, (long long)st.tokens_evaluated, (long long)st.tokens_naive, saving, secs, tps,
                ppl_tps, tps / ppl_tps);
    std::fflush(stdout);
    if (json)
      std::printf("%s\n", nlohmann::json({{"bench", "scorer"}, {"model", s.label}, {"task", spec.name},
                                          {"threads", omp_get_max_threads()}, {"docs", docs.size()},
                                          {"requests", st.requests}, {"tokens_evaluated", st.tokens_evaluated},
                                          {"tokens_naive", st.tokens_naive}, {"saving", saving}, {"seconds", secs},
                                          {"tokens_per_second", tps}, {"ppl_tokens_per_second", ppl_tps},
                                          {"over_ppl", tps / ppl_tps}})
                              .dump()
                              .c_str());
  }
  std::printf("lowest tasks / ppl ratio: %.2fx (target >= 0.80x)\n", worst);
  return worst;
}

}  // namespace

int bench_tasks(bool json, const std::string& data_root) {
  exp::LoadedModel m = exp::load_model_verified(data_root, "testbed-26M");
  const std::vector<int32_t> stream = eval::perplexity_stream(
      *m.tokenizer, io::read_text_file(exp::resolve_text_dataset(data_root, "wikitext2")).substr(0, 200000),
      m.weights.config.bos_id);
  std::printf("\nLoglikelihood scorer against perplexity, same engine, same run (tokens run = forward rows)\n");
  bench_model(json, data_root, {"testbed-26M", 2, 100, 2, {}}, m.weights, *m.tokenizer, stream);
  // The 1B-class shape with random weights, read through testbed-26M's tokenizer (its ids are a
  // subset of the 32000).
  const model::Weights big = synthetic_model(one_b_shape());
  bench_model(json, data_root, {"1.1B shape (random weights)", 1, 24, 12, {"high_school_geography"}}, big,
              *m.tokenizer, stream);
  return 0;
}
