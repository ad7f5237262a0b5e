// ikv-eval tasks: MMLU and the zero-shot commonsense QA suite with lm-evaluation-harness names.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "exp/report.h"
#include "eval/loglikelihood.h"
#include "io/progress.h"
#include "eval/tasks.h"
#include "ikv-eval_commands.h"
#include "io/data_root.h"
#include "variant_options.h"

namespace ikv::cli {
namespace {

struct TasksArgs {
  exp::VariantSpec variant;
  std::string tasks = "arc_easy,arc_challenge,boolq,openbookqa,winogrande,hellaswag,piqa,lambada_openai";
  int64_t limit = 0, max_ctx = 0, shots = 5, mmlu_max_ctx = exp::kMmluMaxCtx, batch = 64;
  std::string bos = "always", mmlu_format = "paper", loglik_out;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

void run_tasks(const Common& common, const TasksArgs& a) {
  exp::set_threads(common.threads);
  exp::validate_variant(a.variant);
  std::vector<const eval::TaskSpec*> specs;
  for (const auto& name : split(a.tasks)) specs.push_back(&eval::find_task(name));  // unknown names fail here
  if (specs.empty()) fail("--tasks '", a.tasks, "' names no task (e.g. arc_easy,hellaswag,mmlu)");
  if (a.bos == "never" && a.variant.intactkv != "none")
    fail("--bos never: IntactKV prefixes start with <bos>; they cannot be used without one");
  const std::string root = io::resolve_data_root(common.data_root);
  exp::PreparedVariant v = exp::prepare_variant(root, a.variant);
  engine::Engine eng(v.model.weights, v.engine_options);
  eval::ScorerOptions so;
  so.max_ctx = a.max_ctx;
  so.kv_bits = a.variant.kv_bits;
  so.quantize_prefix = a.variant.quantize_prefix;
  so.bos = a.bos == "always";
  eval::LoglikelihoodScorer scorer(eng, *v.model.tokenizer, so, v.prefix_ptr());
  std::FILE* dump = nullptr;
  if (!a.loglik_out.empty() && !(dump = std::fopen(a.loglik_out.c_str(), "w")))
    fail("--loglik-out: cannot write ", a.loglik_out);
  std::string task_name;
  int64_t request_index = 0;
  eval::LoglikFn loglik = [&](const std::vector<eval::LoglikRequest>& r) {
    std::vector<eval::LoglikResult> out = scorer.score(r);
    // Exact values (C99 hex floats), for comparing runs bit for bit.
    for (const eval::LoglikResult& x : out)
      if (dump) std::fprintf(dump, "%s\t%lld\t%a\t%d\n", task_name.c_str(), (long long)request_index++, x.logprob, x.greedy ? 1 : 0);
    return out;
  };
  std::vector<eval::TaskResult> results;
  for (const eval::TaskSpec* spec : specs) {
    task_name = spec->name, request_index = 0;
    eval::TaskOptions to;
    to.data_root = root;
    to.limit = a.limit;
    to.num_fewshot = static_cast<int>(a.shots);
    to.count_tokens = [&](const std::string& s) { return scorer.count_tokens(s); };
    to.max_ctx_tokens = eval::mmlu_prompt_limit(a.mmlu_max_ctx, scorer.max_ctx());
    to.mmlu_format = a.mmlu_format;
    to.docs_per_batch = a.batch;
    const std::vector<eval::TaskDoc> docs = eval::load_task_docs(*spec, to);
    // Tokens run: the forward rows this task computed (shared contexts once, no padding); seconds:
    // the scoring, after the dataset is read (as ppl's tokens/s leaves out reading the text).
    const int64_t tokens_before = scorer.stats().tokens_evaluated;
    const auto t0 = std::chrono::steady_clock::now();
    io::Progress bar(spec->name, static_cast<int64_t>(docs.size()));
    eval::TaskResult r = eval::score_docs(*spec, docs, loglik, to.docs_per_batch, [&](int64_t done, int64_t) {
      bar.update(done, scorer.stats().tokens_evaluated - tokens_before);
    });
    bar.finish();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t tokens_run = scorer.stats().tokens_evaluated - tokens_before;
    const double tokens_per_second = seconds > 0 ? tokens_run / seconds : 0;
    if (common.json) {
      nlohmann::json j = {{"task", r.task}, {"model", a.variant.model}, {"quant", exp::method_label(v.quant.short_label(), 16)},
                          {"kv_bits", a.variant.kv_bits}, {"intactkv", a.variant.intactkv}, {"tokens_run", tokens_run},
                          {"seconds", seconds}, {"tokens_per_second", tokens_per_second}};
      for (const auto& m : r.metrics) {
        j[m.name] = m.value;
        j[m.name + "_stderr"] = m.stderr_;
        j["n"] = std::max<int64_t>(j.value("n", int64_t{0}), m.n);
      }
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    } else {
      std::printf("%-16s", r.task.c_str());
      for (const auto& m : r.metrics)
        if (m.name.find('/') == std::string::npos)
          std::printf("  %s %.4f ± %.4f", m.name.c_str(), m.value, m.stderr_);
      std::printf("  (n=%lld; %lld tokens, %.1f s, %.0f tokens/s)\n", (long long)(r.metrics.empty() ? 0 : r.metrics[0].n),
                  (long long)tokens_run, seconds, tokens_per_second);
    }
    std::fflush(stdout);
    results.push_back(std::move(r));
  }
  if (dump && std::fclose(dump) != 0) fail("--loglik-out: cannot write ", a.loglik_out);
  const auto& st = scorer.stats();
  std::fprintf(stderr, "scorer: %lld requests, %lld tokens evaluated vs %lld without context reuse (%.2fx)\n",
               (long long)st.requests, (long long)st.tokens_evaluated, (long long)st.tokens_naive,
               st.tokens_evaluated ? double(st.tokens_naive) / st.tokens_evaluated : 0.0);
}

}  // namespace

void add_tasks_command(CLI::App& app, Common& common) {
  static TasksArgs a;
  CLI::App* cmd = app.add_subcommand("tasks", "MMLU 5-shot and zero-shot QA tasks (lm-evaluation-harness names)");
  add_common(cmd, common);
  add_variant_options(cmd, a.variant);
  cmd->add_option("--tasks", a.tasks,
                  "comma list of arc_easy, arc_challenge, boolq, openbookqa, winogrande, hellaswag, piqa, "
                  "lambada_openai, mmlu");
  cmd->add_option("--limit", a.limit, "first N items per task (per subject for mmlu; 0 = all)")
      ->check(rule(exp::rules::kCount));
  cmd->add_option("--max-ctx", a.max_ctx, "context length limit in tokens (0 = the model's maximum)")
      ->check(rule(exp::rules::kCount));
  cmd->add_option("--shots", a.shots, "MMLU few-shot examples")->check(rule(exp::rules::kCount));
  cmd->add_option("--mmlu-max-ctx", a.mmlu_max_ctx,
                  "MMLU: drop shots while the prompt (with <bos>) exceeds this many tokens (the reference's 2048; 0 = never)")
      ->check(rule(exp::rules::kCount));
  cmd->add_option("--mmlu-format", a.mmlu_format, "MMLU prompt: paper (the Hendrycks script) | lm-eval (v0.4's mmlu)")
      ->check(CLI::IsMember(exp::kMmluFormats));
  cmd->add_option("--batch", a.batch, "documents per scorer call (the scores do not depend on it)")
      ->check(rule(exp::at_least(1)));
  cmd->add_option("--loglik-out", a.loglik_out,
                  "write every request's loglikelihood (hex float, exact) and greedy flag, one line per request");
  cmd->add_option("--bos", a.bos, "start every request with <bos>: always (the paper, lm-eval >= 0.4.9.2) | never")
      ->check(CLI::IsMember(exp::kBosPolicies));
  cmd->callback([&common] { run_tasks(common, a); });
}

}  // namespace ikv::cli
