// Evaluation tasks, declared the lm-evaluation-harness way: a data loader that turns each document
// into loglikelihood requests (context + continuation per answer option) and a gold index, plus
// which metrics the task reports. The prompts follow lm-eval v0.4's task yamls (the version the
// IntactKV repo vendors) exactly; MMLU follows the Hendrycks / IntactKV-repo 5-shot script instead.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/requests.h"

namespace ikv::eval {

// One document: its answer options as the requests the scorer sees, byte for byte.
struct TaskDoc {
  // One (context, continuation) per answer option; continuations carry lm-eval's target delimiter
  // (a leading " "). Most tasks share one context; WinoGrande varies the context and shares the
  // continuation; LAMBADA has a single option (the target).
  std::vector<LoglikRequest> options;
  int gold = 0;         // index of the right option
  std::string subject;  // MMLU subject (per-subject / per-category accuracy); empty elsewhere
};

struct TaskOptions {
  std::string data_root;  // the ikv-data bundle; files are read from <data_root>/datasets/…
  // > 0: only the first `limit` documents in file order (lm-eval's --limit), for MMLU the first
  // `limit` test questions of every subject. Same subset on every run and for every model.
  int64_t limit = 0;
  std::vector<std::string> subjects;  // MMLU: subjects to run (empty = all 57)
  int num_fewshot = 5;                // MMLU: dev examples in the prompt before shot dropping
  TokenCountFn count_tokens;          // MMLU: token count of a prompt without <bos>
  int64_t max_ctx_tokens = 0;         // MMLU: drop shots while count_tokens(prompt) + 1 exceeds it (0 = never)
  // MMLU prompt: "paper" (the Hendrycks script of the IntactKV repo) or "lm-eval" (lm-eval v0.4's
  // mmlu: one space after "about", the question stripped, cells as written, no pandas NA).
  std::string mmlu_format = "paper";
  int64_t docs_per_batch = 64;        // documents per LoglikFn call (all options of a doc in one call)
};

enum class OutputType {
  kMultipleChoice,  // acc = argmax over options of the loglikelihood
  kLoglikelihood,   // one target per doc: acc = greedy match, perplexity = exp(−mean loglik)
};

struct TaskSpec {
  std::string name;  // lm-eval task name ("mmlu" is the Hendrycks 5-shot script, see above)
  // Reads files[...] (data-root relative) in the task's format.
  std::vector<TaskDoc> (*load)(const TaskOptions&, const std::vector<std::string>& files);
  OutputType output = OutputType::kMultipleChoice;
  bool acc_norm = false;    // also report acc_norm (argmax of loglik / len(choice text))
  bool by_subject = false;  // MMLU: per-subject and per-category accuracy
  // The metric this task contributes to qa_average (see there for the choice).
  std::string paper_metric = "acc";
  // The data files it reads, relative to the data root; they also identify its data in plan keys.
  // MMLU's one file is its checksum list, which covers the 171 CSVs it reads by subject.
  std::vector<std::string> files;
  // Read instead of `files` when present in the data root: the canonical form of a dataset the
  // bundle ships converted (HellaSwag: rowanz's hellaswag_val.jsonl, with lm-eval's preprocessing).
  std::vector<std::string> canonical_files;
};

const std::vector<TaskSpec>& all_tasks();
// Unknown name -> Error listing the valid names.
const TaskSpec& find_task(const std::string& name);
std::vector<TaskDoc> load_task_docs(const TaskSpec& spec, const TaskOptions& opts);
// The files the task reads from this data root: canonical_files when all are there, else files.
std::vector<std::string> task_files(const TaskSpec& spec, const std::string& data_root);

struct MetricValue {
  std::string name;
  double value = 0;
  double stderr_ = 0;
  int64_t n = 0;  // documents behind the value
};

struct TaskResult {
  std::string task;
  // Multiple choice: "acc" (+ "acc_norm"). LAMBADA: "acc", "perplexity" (stderr by the delta
  // method: ppl · stderr(loglik); lm-eval bootstraps it instead). MMLU: "acc" = average over all
  // questions, "acc/<category>" for stem, humanities, social_sciences, other, and
  // "acc/<subject>" for every subject run.
  std::vector<MetricValue> metrics;
  // Per document, in document order, for paired comparisons between runs on the same items.
  std::vector<double> per_item_acc;       // 0/1
  std::vector<double> per_item_acc_norm;  // 0/1; empty when the task has no acc_norm
  std::vector<double> per_item_logprob;   // loglikelihood tasks: log p(target); empty otherwise

  const MetricValue& metric(const std::string& name) const;  // missing -> Error
};

using ProgressFn = std::function<void(int64_t done_docs, int64_t total_docs)>;

TaskResult run_task(const TaskSpec& spec, const TaskOptions& opts, const LoglikFn& loglik,
                    const ProgressFn& progress = nullptr);
// Scores already-loaded documents (what run_task does after load_task_docs): score_items, then
// add_task_metrics.
TaskResult score_docs(const TaskSpec& spec, const std::vector<TaskDoc>& docs, const LoglikFn& loglik,
                      int64_t docs_per_batch = 64, const ProgressFn& progress = nullptr);
// The per-document outcomes alone (no metrics). A document's outcome depends on that document
// only, so a task can be scored in document ranges anywhere and the outcomes concatenated.
TaskResult score_items(const TaskSpec& spec, const std::vector<TaskDoc>& docs, const LoglikFn& loglik,
                       int64_t docs_per_batch = 64, const ProgressFn& progress = nullptr);
// Fills r.metrics from r's per-item outcomes; `subjects` (one per document, MMLU only, else
// empty) gives the per-subject and per-category groups.
void add_task_metrics(const TaskSpec& spec, const std::vector<std::string>& subjects, TaskResult& r);

// The prompt length at which MMLU drops shots: the task's setting (the reference's 2048 by default;
// 0 = never drop) capped by the scorer's context.
inline int64_t mmlu_prompt_limit(int64_t setting, int64_t scorer_ctx) {
  return setting > 0 ? std::min(setting, scorer_ctx) : 0;
}

// The zero-shot QA suite of the IntactKV repo (intactkv_eval.py --tasks qa); it has no PIQA.
const std::vector<std::string>& paper_qa_tasks();
// Mean over the given results of each task's paper_metric (acc_norm for arc_challenge, hellaswag
// and openbookqa; acc elsewhere; see tasks.cc). Every result must be a known task.
double qa_average(const std::vector<TaskResult>& results);

// MMLU's 57 subjects (sorted, as the reference lists the test folder) and their Hendrycks category.
struct MmluSubject {
  const char* name;         // file stem, e.g. "high_school_us_history"
  const char* subcategory;  // e.g. "history"
  const char* category;     // "stem", "humanities", "social_sciences" or "other"
};
const std::vector<MmluSubject>& mmlu_subjects();

}  // namespace ikv::eval
