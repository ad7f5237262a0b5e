// The task table and the scoring loop shared by every task.
#include "eval/tasks.h"

#include <cmath>
#include <filesystem>
#include <map>

#include "eval/dataset_io.h"
#include "eval/stats.h"
#include "eval/task_loaders.h"
#include "io/error.h"

namespace ikv::eval {

const std::vector<TaskSpec>& all_tasks() {
  using enum OutputType;
  // paper_metric decides qa_average. The IntactKV paper averages its zero-shot QA table without
  // saying acc or acc_norm, so we follow the lm-eval convention most papers report: acc_norm where
  // length normalization is the task's customary headline (HellaSwag, ARC-Challenge, OpenBookQA,
  // as in the LLaMA paper and the Open LLM Leaderboard), plain acc elsewhere (ARC-Easy, BoolQ,
  // WinoGrande, PIQA, LAMBADA). Both numbers are always reported; this is the only place to change.
  static const std::vector<TaskSpec> tasks = {
      {"arc_easy", load_arc_easy, kMultipleChoice, true, false, "acc", {"datasets/arc/ARC-Easy/ARC-Easy-Test.jsonl"}},
      {"arc_challenge", load_arc_challenge, kMultipleChoice, true, false, "acc_norm",
       {"datasets/arc/ARC-Challenge/ARC-Challenge-Test.jsonl"}},
      {"boolq", load_boolq, kMultipleChoice, false, false, "acc", {"datasets/boolq/dev.jsonl"}},
      {"hellaswag", load_hellaswag, kMultipleChoice, true, false, "acc_norm", {"datasets/hellaswag/hellaswag_val_full.txt"},
       {"datasets/hellaswag/hellaswag_val.jsonl"}},
      {"lambada_openai", load_lambada_openai, kLoglikelihood, false, false, "acc",
       {"datasets/lambada-openai/lambada_test.jsonl"}},
      {"mmlu", load_mmlu, kMultipleChoice, false, true, "acc", {"datasets/mmlu/SHA256SUMS"}},
      {"openbookqa", load_openbookqa, kMultipleChoice, true, false, "acc_norm", {"datasets/openbookqa/Main/test.jsonl"}},
      {"piqa", load_piqa, kMultipleChoice, true, false, "acc", {"datasets/piqa/valid.jsonl", "datasets/piqa/valid-labels.lst"}},
      {"winogrande", load_winogrande, kMultipleChoice, false, false, "acc",
       {"datasets/winogrande/winogrande_1.1/dev.jsonl"}},
  };
  return tasks;
}

const TaskSpec& find_task(const std::string& name) {
  std::string valid;
  for (const TaskSpec& t : all_tasks()) {
    if (t.name == name) return t;
    valid += (valid.empty() ? "" : ", ") + t.name;
  }
  fail("unknown task \"", name, "\"; valid tasks: ", valid);
}

std::vector<std::string> task_files(const TaskSpec& spec, const std::string& data_root) {
  if (spec.canonical_files.empty()) return spec.files;
  std::error_code ec;
  for (const std::string& f : spec.canonical_files)
    if (!std::filesystem::is_regular_file(std::filesystem::path(data_root) / f, ec)) return spec.files;
  return spec.canonical_files;
}

std::vector<TaskDoc> load_task_docs(const TaskSpec& spec, const TaskOptions& opts) {
  std::vector<TaskDoc> docs = spec.load(opts, task_files(spec, opts.data_root));
  for (size_t i = 0; i < docs.size(); ++i) {
    const TaskDoc& d = docs[i];
    size_t want_options = spec.output == OutputType::kLoglikelihood ? 1 : d.options.size();
    if (d.options.empty() || d.options.size() != want_options || d.gold < 0 ||
        d.gold >= static_cast<int>(d.options.size()))
      fail(spec.name, ": document ", i, " has ", d.options.size(), " options and gold ", d.gold);
  }
  return docs;
}

const MetricValue& TaskResult::metric(const std::string& name) const {
  for (const MetricValue& m : metrics)
    if (m.name == name) return m;
  fail(task, ": no metric \"", name, "\"");
}

namespace {

// np.argmax: the first maximum wins ties.
int argmax(const double* v, size_t n) {
  size_t best = 0;
  for (size_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return static_cast<int>(best);
}

// lm-eval's acc_norm divides by float(len(choice)) where choice is doc_to_choice's string, i.e.
// the continuation without the " " target delimiter, counted in characters (code points), not
// bytes or tokens.
double choice_length(const std::string& continuation) {
  int64_t n = utf8_length(continuation);
  if (!continuation.empty() && continuation[0] == ' ') --n;
  return static_cast<double>(n);
}

MetricValue mean_metric(const std::string& name, const std::vector<double>& per_item) {
  MeanStderr m = mean_stderr(per_item);
  return {name, m.mean, m.stderr_, m.n};
}

void add_mmlu_groups(const std::vector<std::string>& subjects, TaskResult& r) {
  if (subjects.size() != r.per_item_acc.size())
    fail("mmlu: ", subjects.size(), " subjects for ", r.per_item_acc.size(), " documents");
  std::map<std::string, const MmluSubject*> by_name;
  for (const MmluSubject& s : mmlu_subjects()) by_name[s.name] = &s;
  std::map<std::string, std::vector<double>> by_category;
  std::vector<std::pair<std::string, std::vector<double>>> by_subject;  // document order
  for (size_t i = 0; i < subjects.size(); ++i) {
    auto it = by_name.find(subjects[i]);
    if (it == by_name.end()) fail("mmlu: document ", i, " has unknown subject \"", subjects[i], "\"");
    by_category[it->second->category].push_back(r.per_item_acc[i]);
    if (by_subject.empty() || by_subject.back().first != subjects[i]) by_subject.push_back({subjects[i], {}});
    by_subject.back().second.push_back(r.per_item_acc[i]);
  }
  for (const char* cat : {"stem", "humanities", "social_sciences", "other"})
    if (by_category.count(cat)) r.metrics.push_back(mean_metric(std::string("acc/") + cat, by_category[cat]));
  for (const auto& [subject, acc] : by_subject) r.metrics.push_back(mean_metric("acc/" + subject, acc));
}

}  // namespace

TaskResult score_docs(const TaskSpec& spec, const std::vector<TaskDoc>& docs, const LoglikFn& loglik,
                      int64_t docs_per_batch, const ProgressFn& progress) {
  TaskResult r = score_items(spec, docs, loglik, docs_per_batch, progress);
  std::vector<std::string> subjects;
  if (spec.by_subject)
    for (const TaskDoc& d : docs) subjects.push_back(d.subject);
  add_task_metrics(spec, subjects, r);
  return r;
}

TaskResult score_items(const TaskSpec& spec, const std::vector<TaskDoc>& docs, const LoglikFn& loglik,
                       int64_t docs_per_batch, const ProgressFn& progress) {
  if (!loglik) fail(spec.name, ": no loglikelihood scorer given");
  const bool is_mc = spec.output == OutputType::kMultipleChoice;
  const size_t total = docs.size(), batch = static_cast<size_t>(std::max<int64_t>(1, docs_per_batch));
  TaskResult r;
  r.task = spec.name;
  std::vector<LoglikRequest> requests;
  std::vector<double> lls, norm;
  for (size_t begin = 0; begin < total; begin += batch) {
    const size_t end = std::min(total, begin + batch);
    requests.clear();
    for (size_t i = begin; i < end; ++i)
      requests.insert(requests.end(), docs[i].options.begin(), docs[i].options.end());
    std::vector<LoglikResult> results = loglik(requests);
    if (results.size() != requests.size())
      fail(spec.name, ": the loglikelihood scorer returned ", results.size(), " results for ", requests.size(),
           " requests");
    size_t k = 0;
    for (size_t i = begin; i < end; ++i) {
      const TaskDoc& d = docs[i];
      const size_t n = d.options.size();
      lls.assign(n, 0);
      norm.assign(n, 0);
      for (size_t j = 0; j < n; ++j) {
        lls[j] = results[k + j].logprob;
        norm[j] = lls[j] / choice_length(d.options[j].continuation);
      }
      if (is_mc) {
        r.per_item_acc.push_back(argmax(lls.data(), n) == d.gold ? 1.0 : 0.0);
        if (spec.acc_norm) r.per_item_acc_norm.push_back(argmax(norm.data(), n) == d.gold ? 1.0 : 0.0);
      } else {
        r.per_item_acc.push_back(results[k].greedy ? 1.0 : 0.0);
        r.per_item_logprob.push_back(results[k].logprob);
      }
      k += n;
    }
    if (progress) progress(static_cast<int64_t>(end), static_cast<int64_t>(total));
  }
  return r;
}

void add_task_metrics(const TaskSpec& spec, const std::vector<std::string>& subjects, TaskResult& r) {
  const bool is_mc = spec.output == OutputType::kMultipleChoice;
  r.task = spec.name;
  r.metrics.clear();
  r.metrics.push_back(mean_metric("acc", r.per_item_acc));
  if (is_mc && spec.acc_norm) r.metrics.push_back(mean_metric("acc_norm", r.per_item_acc_norm));
  if (!is_mc) {
    // lm-eval's "perplexity" aggregation: exp(−mean over documents of the target loglikelihood).
    MeanStderr ll = mean_stderr(r.per_item_logprob);
    double ppl = std::exp(-ll.mean);
    r.metrics.push_back({"perplexity", ppl, ppl * ll.stderr_, ll.n});
  }
  if (spec.by_subject) add_mmlu_groups(subjects, r);
}

TaskResult run_task(const TaskSpec& spec, const TaskOptions& opts, const LoglikFn& loglik,
                    const ProgressFn& progress) {
  return score_docs(spec, load_task_docs(spec, opts), loglik, opts.docs_per_batch, progress);
}

const std::vector<std::string>& paper_qa_tasks() {
  static const std::vector<std::string> tasks = {"openbookqa", "winogrande", "arc_challenge", "arc_easy",
                                                 "boolq",      "hellaswag",  "lambada_openai"};
  return tasks;
}

double qa_average(const std::vector<TaskResult>& results) {
  if (results.empty()) fail("qa_average: no task results");
  double sum = 0;
  for (const TaskResult& r : results) sum += r.metric(find_task(r.task).paper_metric).value;
  return sum / static_cast<double>(results.size());
}

}  // namespace ikv::eval
