// The paper-layout table and the paired IntactKV-vs-baseline intervals, from stored cells.
#include <algorithm>
#include <cctype>
#include <map>

#include "eval/stats.h"
#include "eval/tasks.h"
#include "exp/report.h"
#include "io/error.h"

namespace ikv::exp {
namespace {

bool in_table(const CellRecord& c) {
  return c.task_kind == "ppl" || c.task_kind == "qa" || c.task_kind == "mmlu";
}

template <typename T>
size_t index_of(std::vector<T>& list, const T& item) {  // appends when new
  auto it = std::find(list.begin(), list.end(), item);
  if (it != list.end()) return static_cast<size_t>(it - list.begin());
  list.push_back(item);
  return list.size() - 1;
}

// "arc_easy/no-bos" -> "arc_easy": the task a label stands for.
std::string base_task(const std::string& label) { return label.substr(0, label.find('/')); }

}  // namespace

std::string table_metric(const CellRecord& c) {
  if (c.task_kind == "ppl") return kPplMetric;
  if (c.task_kind == "qa")
    for (const eval::TaskSpec& t : eval::all_tasks())
      if (t.name == base_task(c.task)) return t.paper_metric;
  return kAccMetric;
}

const std::vector<std::string>& averaged_tasks(const std::vector<std::string>& qa_average) {
  return qa_average.empty() ? eval::paper_qa_tasks() : qa_average;
}

ReportFormat parse_report_format(std::string_view name) {
  if (name == "md" || name == "markdown") return ReportFormat::Markdown;
  if (name == "csv") return ReportFormat::Csv;
  if (name == "json") return ReportFormat::Json;
  if (name == "html") return ReportFormat::Html;
  fail("unknown report format '", name, "'; expected md, csv, json or html");
}

std::string method_label(const std::string& quant, int kv_bits) {
  static const std::map<std::string, std::string> methods = {
      {"rtn", "RTN"}, {"gptq", "GPTQ"}, {"awq", "AWQ"}, {"quarot", "QuaRot"}};
  static const std::map<std::string, std::string> suffixes = {
      {"sym", "sym"},           {"ao", "act-order"},   {"gptq", "GPTQ weights"},
      {"sw", "super weights kept"}, {"static", "static scales"}, {"sinks", "sink KV kept"}};
  auto note = [&](const std::string& part) -> std::string {
    if (auto it = suffixes.find(part); it != suffixes.end()) return it->second;
    if (part.starts_with("kivi")) return "KIVI keys, residual " + part.substr(4);
    return part;
  };
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t dash = quant.find('-', start);
    parts.push_back(quant.substr(start, dash - start));
    if (dash == std::string::npos) break;
    start = dash + 1;
  }
  std::string label = quant;  // a custom `label:` stays as written
  auto with_notes = [&](std::string head, size_t first) {
    std::string notes;
    for (size_t i = first; i < parts.size(); ++i) notes += (notes.empty() ? "" : ", ") + note(parts[i]);
    return notes.empty() ? head : head + " (" + notes + ")";
  };
  if (parts[0] == "fp") {  // "fp", or fp with a KV scheme: "fp-kivi128"
    label = with_notes("FP", 1);
  } else if (parts.size() >= 2 && methods.count(parts[0]) && parts[1].starts_with("w")) {
    std::string spec = parts[1];
    for (char& ch : spec) ch = ch == 'w' ? 'W' : ch == 'a' ? 'A' : ch;
    label = with_notes(methods.at(parts[0]) + " " + spec, 2);
  }
  if (kv_bits < 16) label += " KV" + std::to_string(kv_bits);
  return label;
}

// [B] = the <bos> prefix, [P] = a system prompt prefix, as in the IntactKV paper. Several preset
// prompts in one table would share "[P]"; their rows stay apart, only the text repeats.
std::string intactkv_row_label(const std::string& v) {
  if (v == "none") return "";
  if (v == "bos") return "+ IntactKV_[B]";
  if (v == "auto") return "+ IntactKV (auto)";
  if (v == "outliers") return "+ IntactKV (outlier tokens)";  // PrefixQuant's data-chosen prefix
  if (v.ends_with("+cal"))
    return v == "bos+cal" ? "+ IntactKV_[B] (calibrated)" : "+ IntactKV_[P] (calibrated)";
  if (v.starts_with("prompt-")) return "+ IntactKV_[P] (" + v + ")";
  if (v.starts_with("file-")) return "+ IntactKV (" + v + ")";
  return "+ IntactKV_[P]";
}

ReportTable build_report_table(const std::vector<CellRecord>& cells, const std::vector<std::string>& qa_average) {
  const std::vector<std::string>& averaged = averaged_tasks(qa_average);
  std::vector<std::string> models;
  std::vector<std::pair<std::string, std::string>> tasks;  // (kind, task): ppl, then qa, then mmlu
  for (const auto& c : cells)
    if (in_table(c)) index_of(models, c.model);
  for (const char* kind : {"ppl", "qa", "mmlu"})
    for (const auto& c : cells)
      if (c.task_kind == kind) index_of(tasks, {c.task_kind, c.task});
  auto in_average = [&](const std::string& kind, const std::string& task) {
    return kind == "qa" && std::find(averaged.begin(), averaged.end(), task) != averaged.end();
  };
  const bool has_avg = std::all_of(averaged.begin(), averaged.end(), [&](const std::string& name) {
    return std::find(tasks.begin(), tasks.end(), std::pair<std::string, std::string>{"qa", name}) != tasks.end();
  });
  auto metric_of = [&](const std::string& kind, const std::string& task) {
    CellRecord probe;
    probe.task_kind = kind, probe.task = task;
    return table_metric(probe);
  };

  ReportTable table;
  for (const auto& m : models) {  // ppl datasets, QA tasks and their Avg, then MMLU
    for (const auto& [kind, task] : tasks)
      if (kind != "mmlu") table.columns.push_back({m, task, kind, metric_of(kind, task)});
    if (has_avg) table.columns.push_back({m, "Avg", "avg", "avg"});
    for (const auto& [kind, task] : tasks)
      if (kind == "mmlu") table.columns.push_back({m, task, kind, metric_of(kind, task)});
  }

  // Rows: methods in order of first appearance, each followed by its IntactKV variants.
  std::vector<std::pair<std::string, int>> methods;
  for (const auto& c : cells)
    if (in_table(c)) index_of(methods, {c.quant, c.kv_bits});
  for (const auto& [quant, kv] : methods) {
    std::vector<std::string> variants = {"none"};
    for (const auto& c : cells)
      if (in_table(c) && c.quant == quant && c.kv_bits == kv) index_of(variants, c.intactkv);
    for (const auto& v : variants) {
      ReportRow row;
      row.label = v == "none" ? method_label(quant, kv) : intactkv_row_label(v);
      row.quant = quant, row.kv_bits = kv, row.intactkv = v;
      row.reference = quant == "fp" && kv == 16;
      row.values.assign(table.columns.size(), std::nullopt);
      for (const auto& c : cells) {
        if (!in_table(c) || c.quant != quant || c.kv_bits != kv || c.intactkv != v) continue;
        const Metric* m = c.metric(table_metric(c));
        if (!m) continue;
        for (size_t i = 0; i < table.columns.size(); ++i)
          if (table.columns[i].model == c.model && table.columns[i].task == c.task &&
              table.columns[i].task_kind == c.task_kind)
            row.values[i] = c.task_kind == "ppl" ? m->value : 100 * m->value;
      }
      for (size_t i = 0; i < table.columns.size(); ++i) {  // Avg: over the averaged QA tasks of the model
        if (table.columns[i].task_kind != "avg") continue;
        double sum = 0;
        int n = 0, expected = 0;
        for (size_t j = 0; j < table.columns.size(); ++j)
          if (table.columns[j].model == table.columns[i].model &&
              in_average(table.columns[j].task_kind, table.columns[j].task)) {
            ++expected;
            if (row.values[j]) sum += *row.values[j], ++n;
          }
        if (n > 0 && n == expected) row.values[i] = sum / n;
      }
      if (std::any_of(row.values.begin(), row.values.end(), [](const auto& x) { return x.has_value(); }))
        table.rows.push_back(std::move(row));
    }
  }

  for (size_t i = 0; i < table.columns.size(); ++i) {
    const bool lower_better = table.columns[i].task_kind == "ppl";
    std::optional<double> best;
    int candidates = 0;
    for (const auto& row : table.rows) {
      if (row.reference || !row.values[i]) continue;
      ++candidates;
      const double v = *row.values[i];
      if (!best || (lower_better ? v < *best : v > *best)) best = v;
    }
    for (auto& row : table.rows)
      row.best.push_back(candidates >= 2 && !row.reference && row.values[i] && *row.values[i] == *best);
  }
  return table;
}

std::string base_method(const std::string& quant) {
  static const std::vector<std::string> extras = {"sw", "static", "sinks"};
  std::string out;
  for (size_t start = 0;;) {
    const size_t dash = quant.find('-', start);
    const std::string part = quant.substr(start, dash - start);
    const bool extra = start > 0 && (std::find(extras.begin(), extras.end(), part) != extras.end() ||
                                     (part.starts_with("kivi") && part.size() > 4 &&
                                      std::isdigit(static_cast<unsigned char>(part[4]))));
    if (!extra) out += (out.empty() ? "" : "-") + part;
    if (dash == std::string::npos) return out;
    start = dash + 1;
  }
}

std::vector<PairedComparison> intactkv_vs_baseline(const std::vector<CellRecord>& cells, int resamples,
                                                   uint64_t seed, const std::string& baseline) {
  std::vector<PairedComparison> out;
  if (resamples <= 0) return out;
  for (const auto& variant : cells) {
    if (variant.outcomes.empty()) continue;
    // "none": IntactKV variants against their method's row; "bos": every other row of a method
    // against IntactKV_[B] of the method without its extras.
    const bool against_bos = baseline == "bos";
    if (!against_bos && variant.intactkv == "none") continue;
    const std::string base_quant = against_bos ? base_method(variant.quant) : variant.quant;
    if (against_bos && variant.intactkv == "bos" && variant.quant == base_quant) continue;
    auto base = std::find_if(cells.begin(), cells.end(), [&](const CellRecord& c) {
      return c.intactkv == baseline && c.model == variant.model && c.quant == base_quant &&
             c.kv_bits == variant.kv_bits && c.task_kind == variant.task_kind && c.task == variant.task;
    });
    if (base == cells.end()) continue;
    for (const auto& o : variant.outcomes) {
      const ItemOutcomes* b = base->outcomes_of(o.metric);
      if (!b || b->values.size() != o.values.size() || o.values.empty()) continue;
      const eval::BootstrapCI ci = eval::paired_bootstrap(b->values, o.values, resamples, seed);
      out.push_back({variant.model, variant.quant, variant.kv_bits, variant.intactkv, variant.task, o.metric,
                     o.values.size(), ci.diff, ci.lo, ci.hi});
    }
  }
  return out;
}

}  // namespace ikv::exp
