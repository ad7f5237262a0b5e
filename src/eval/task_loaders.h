// The dataset loaders behind all_tasks() (tasks.cc); private to src/eval.
#pragma once
#include <algorithm>
#include <vector>

#include "eval/tasks.h"

namespace ikv::eval {

// lm-eval tasks (task_qa.cc).
std::vector<TaskDoc> load_arc_easy(const TaskOptions& o, const std::vector<std::string>& files);
std::vector<TaskDoc> load_arc_challenge(const TaskOptions& o, const std::vector<std::string>& files);
std::vector<TaskDoc> load_boolq(const TaskOptions& o, const std::vector<std::string>& files);
std::vector<TaskDoc> load_openbookqa(const TaskOptions& o, const std::vector<std::string>& files);
std::vector<TaskDoc> load_winogrande(const TaskOptions& o, const std::vector<std::string>& files);
std::vector<TaskDoc> load_hellaswag(const TaskOptions& o, const std::vector<std::string>& files);
std::vector<TaskDoc> load_piqa(const TaskOptions& o, const std::vector<std::string>& files);
std::vector<TaskDoc> load_lambada_openai(const TaskOptions& o, const std::vector<std::string>& files);
// Hendrycks MMLU (task_mmlu.cc).
std::vector<TaskDoc> load_mmlu(const TaskOptions& o, const std::vector<std::string>& files);

// lm-eval's --limit: the first `limit` documents in file order.
inline void keep_first(std::vector<TaskDoc>& docs, int64_t limit) {
  if (limit > 0 && static_cast<int64_t>(docs.size()) > limit) docs.resize(static_cast<size_t>(limit));
}

}  // namespace ikv::eval
