// Cells in parts: PPL windows and QA/MMLU documents computed by item range (run_part) and merged
// back into the cell's record (merge_parts). A whole cell is its single part, merged the same way.
#include <cmath>
#include <map>

#include "engine/forward.h"
#include "eval/loglikelihood.h"
#include "eval/perplexity.h"
#include "eval/tasks.h"
#include "exp/executor.h"
#include "exp/estimate.h"
#include "io/error.h"

namespace ikv::exp {
namespace {

std::string qa_task_name(const Cell& cell) {
  return task_kind(cell.task) == "mmlu" ? "mmlu" : std::get<QaUnit>(cell.task).task;
}

// The per-item values of all parts, concatenated in part order, by name.
std::map<std::string, std::vector<double>> concatenated(const std::vector<CellPart>& parts) {
  std::map<std::string, std::vector<double>> all;
  for (const CellPart& p : parts)
    for (const ItemOutcomes& o : p.values) {
      if (static_cast<int64_t>(o.values.size()) != p.end - p.begin)
        fail("part ", p.part + 1, "/", p.parts, ": ", o.values.size(), " values of ", o.metric, " for ",
             p.end - p.begin, " items");
      auto& v = all[o.metric];
      v.insert(v.end(), o.values.begin(), o.values.end());
    }
  return all;
}

}  // namespace

bool splittable(const Cell& cell) {
  const std::string kind = task_kind(cell.task);
  return kind == "ppl" || kind == "qa" || kind == "mmlu";
}

std::pair<int64_t, int64_t> part_range(int64_t items, int part, int parts) {
  if (parts < 1 || part < 0 || part >= parts) fail("part ", part, " of ", parts, " does not exist");
  return {items * part / parts, items * (part + 1) / parts};
}

CellPart Executor::run_part(const Cell& cell, int part, int parts) {
  if (!splittable(cell)) fail(cell.describe(), ": ", task_kind(cell.task), " cells are not split into parts");
  part_range(1, part, parts);  // validates part/parts
  CellPart out = task_kind(cell.task) == "ppl" ? run_ppl_part(cell, part, parts) : run_qa_part(cell, part, parts);
  if (auto loss = calibration_loss(cell)) out.extra.push_back(*loss);
  return out;
}

CellPart Executor::run_ppl_part(const Cell& cell, int part, int parts) {
  const auto& u = std::get<PplUnit>(cell.task);
  const intactkv::Prefix* prefix = prefix_for(cell);
  engine::Engine eng(weights_for(cell), engine_options(cell));
  const std::vector<int32_t>& stream = token_stream(cell.model, u.dataset);
  eval::PerplexityOptions opt;
  opt.ctx = u.ctx;
  opt.windows = u.windows;
  opt.kv_bits = cell.kv_bits;
  opt.progress = false;
  opt.source = u.dataset;
  opt.layer_major = layer_major_needed(eng.weights());
  CellPart out;
  out.part = part, out.parts = parts;
  out.items = eval::perplexity_window_count(static_cast<int64_t>(stream.size()), opt);
  std::tie(out.begin, out.end) = part_range(out.items, part, parts);
  eval::PerplexityResult r;
  if (out.end > out.begin) {
    opt.first_window = out.begin;
    opt.windows = out.end;
    r = eval::perplexity(eng, stream, opt, prefix);
  }
  out.tokens_scored = r.tokens_scored;
  out.values.push_back({"window_nll", r.window_nll});
  if (eng.options().kv.protect_sinks && cell.kv_bits < 16) {  // one forward call per window
    const std::vector<int64_t>& kept = eng.sinks_kept();
    if (static_cast<int64_t>(kept.size()) != out.end - out.begin)
      fail(cell.describe(), ": ", kept.size(), " sink counts for ", out.end - out.begin, " windows");
    out.values.push_back({"sink_tokens", std::vector<double>(kept.begin(), kept.end())});
  }
  return out;
}

CellPart Executor::run_qa_part(const Cell& cell, int part, int parts) {
  const std::string task = qa_task_name(cell);
  const eval::TaskSpec& spec = eval::find_task(task);
  const intactkv::Prefix* prefix = prefix_for(cell);
  const LoadedModel& fp = fp_model(cell.model);
  engine::Engine eng(weights_for(cell), engine_options(cell));
  const auto* mmlu = std::get_if<MmluTask>(&cell.task);
  eval::ScorerOptions so;
  so.kv_bits = cell.kv_bits;
  so.bos = (mmlu ? mmlu->bos : std::get<QaUnit>(cell.task).bos) == "always";
  eval::LoglikelihoodScorer scorer(eng, *fp.tokenizer, so, prefix);
  eval::TaskOptions to;
  to.data_root = data_root_;
  std::string id = cell.model.path + "|" + task;
  if (mmlu) {
    to.limit = mmlu->limit;
    to.num_fewshot = mmlu->shots;
    to.subjects = mmlu->subjects;
    to.mmlu_format = mmlu->format;
    to.max_ctx_tokens = eval::mmlu_prompt_limit(mmlu->max_ctx, scorer.max_ctx());
    id += "|shots " + std::to_string(mmlu->shots) + "|" + mmlu->format;
    for (const auto& s : mmlu->subjects) id += "|" + s;
  } else {
    to.limit = std::get<QaUnit>(cell.task).limit;
  }
  to.count_tokens = [&](const std::string& s) { return scorer.count_tokens(s); };
  // Loading (and MMLU's shot dropping, which depends on the context length) once per executor,
  // not once per part.
  id += "|limit " + std::to_string(to.limit) + "|ctx " + std::to_string(to.max_ctx_tokens);
  auto it = docs_.find(id);
  if (it == docs_.end()) it = docs_.emplace(id, eval::load_task_docs(spec, to)).first;
  const std::vector<eval::TaskDoc>& docs = it->second;

  CellPart out;
  out.part = part, out.parts = parts;
  out.items = static_cast<int64_t>(docs.size());
  std::tie(out.begin, out.end) = part_range(out.items, part, parts);
  const std::vector<eval::TaskDoc> mine(docs.begin() + out.begin, docs.begin() + out.end);
  eval::TaskResult r = eval::score_items(spec, mine, [&](const std::vector<eval::LoglikRequest>& q) {
    return scorer.score(q);
  }, to.docs_per_batch);
  out.values.push_back({"acc", r.per_item_acc});
  if (spec.acc_norm) out.values.push_back({"acc_norm", r.per_item_acc_norm});
  if (spec.output == eval::OutputType::kLoglikelihood) out.values.push_back({"logprob", r.per_item_logprob});
  if (spec.by_subject)
    for (const eval::TaskDoc& d : mine) out.subjects.push_back(d.subject);
  return out;
}

CellRecord merge_parts(const Cell& cell, const std::vector<CellPart>& parts) {
  if (parts.empty()) fail(cell.describe(), ": no parts to merge");
  for (size_t i = 0; i < parts.size(); ++i) {
    const CellPart& p = parts[i];
    const int64_t expected_begin = i == 0 ? 0 : parts[i - 1].end;
    if (p.part != static_cast<int>(i) || p.parts != static_cast<int>(parts.size()) || p.items != parts[0].items ||
        p.begin != expected_begin || p.end < p.begin)
      fail(cell.describe(), ": part ", i + 1, "/", parts.size(), " does not continue the parts before it (part ",
           p.part + 1, "/", p.parts, ", items ", p.begin, "..", p.end, " of ", p.items, ")");
  }
  if (parts.back().end != parts[0].items)
    fail(cell.describe(), ": the parts cover ", parts.back().end, " of ", parts[0].items, " items");
  std::map<std::string, std::vector<double>> values = concatenated(parts);
  CellRecord rec;
  if (task_kind(cell.task) == "ppl") {
    std::vector<eval::PerplexityResult> joined(1);
    for (const CellPart& p : parts) {
      joined[0].tokens_scored += p.tokens_scored;
      joined[0].windows += p.end - p.begin;
    }
    joined[0].window_nll = values["window_nll"];
    const eval::PerplexityResult r = eval::join_perplexity(joined);
    // Standard error of the PPL by the delta method over windows (windows are the independent units).
    double m = r.nll_sum / r.windows, var = 0;
    for (double w : r.window_nll) var += (w - m) * (w - m);
    const double se_mean_nll = r.windows > 1 ? std::sqrt(var / (r.windows - 1) / r.windows) : NAN;
    const double tokens_per_window = static_cast<double>(r.tokens_scored) / r.windows;
    rec.metrics.push_back({"ppl", r.ppl, r.ppl * se_mean_nll / tokens_per_window, r.tokens_scored});
    rec.outcomes.push_back({"window_nll", r.window_nll});
    if (auto kept = values.find("sink_tokens"); kept != values.end()) {  // kv_protect: sinks
      const std::vector<double>& k = kept->second;
      double sum = 0;
      for (double v : k) sum += v;
      rec.metrics.push_back({"sink_tokens_per_window", k.empty() ? NAN : sum / k.size(), NAN,
                             static_cast<int64_t>(k.size())});
      rec.outcomes.push_back({"sink_tokens", k});
    }
  } else {
    const eval::TaskSpec& spec = eval::find_task(qa_task_name(cell));
    eval::TaskResult r;
    r.per_item_acc = values["acc"];
    if (spec.acc_norm) r.per_item_acc_norm = values["acc_norm"];
    if (spec.output == eval::OutputType::kLoglikelihood) r.per_item_logprob = values["logprob"];
    std::vector<std::string> subjects;
    for (const CellPart& p : parts) subjects.insert(subjects.end(), p.subjects.begin(), p.subjects.end());
    eval::add_task_metrics(spec, subjects, r);
    for (const auto& m : r.metrics) rec.metrics.push_back({m.name, m.value, m.stderr_, m.n});
    rec.outcomes.push_back({"acc", r.per_item_acc});
    if (!r.per_item_acc_norm.empty()) rec.outcomes.push_back({"acc_norm", r.per_item_acc_norm});
  }
  for (const ItemOutcomes& o : parts[0].extra) rec.outcomes.push_back(o);
  return rec;
}

}  // namespace ikv::exp
