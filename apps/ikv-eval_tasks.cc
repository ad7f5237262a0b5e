// ikv-eval tasks: MMLU and the zero-shot commonsense QA suite with lm-evaluation-harness names.
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
  int64_t limit = 0, max_ctx = 0, shots = 5, mmlu_max_ctx = exp::kMmluMaxCtx;
  std::string bos = "always", mmlu_format = "paper";
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
  eval::LoglikFn loglik = [&](const std::vector<eval::LoglikRequest>& r) { return scorer.score(r); };
  std::vector<eval::TaskResult> results;
  for (const eval::TaskSpec* spec : specs) {
    eval::TaskOptions to;
    to.data_root = root;
    to.limit = a.limit;
    to.num_fewshot = static_cast<int>(a.shots);
    to.count_tokens = [&](const std::string& s) { return scorer.count_tokens(s); };
    to.max_ctx_tokens = eval::mmlu_prompt_limit(a.mmlu_max_ctx, scorer.max_ctx());
    to.mmlu_format = a.mmlu_format;
    io::Progress bar(spec->name, 1);
    eval::TaskResult r = eval::run_task(*spec, to, loglik, [&](int64_t done, int64_t total) {
      bar = io::Progress(spec->name, total);
      bar.update(done);
    });
    bar.finish();
    if (common.json) {
      nlohmann::json j = {{"task", r.task}, {"model", a.variant.model}, {"quant", exp::method_label(v.quant.short_label(), 16)},
                          {"kv_bits", a.variant.kv_bits}, {"intactkv", a.variant.intactkv}};
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
      std::printf("  (n=%lld)\n", (long long)(r.metrics.empty() ? 0 : r.metrics[0].n));
    }
    results.push_back(std::move(r));
  }
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
  cmd->add_option("--bos", a.bos, "start every request with <bos>: always (the paper, lm-eval >= 0.4.9.2) | never")
      ->check(CLI::IsMember(exp::kBosPolicies));
  cmd->callback([&common] { run_tasks(common, a); });
}

}  // namespace ikv::cli
