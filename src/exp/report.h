// Result tables in the paper's layout, from the cells of a run: rows are methods (quantizer and
// KV bits) each followed by its IntactKV variants ("RTN W3g128", "+ IntactKV_[B]", ...), columns
// are models x tasks (PPL for perplexity datasets, accuracy % for QA tasks and MMLU, and "Avg"
// over the QA tasks). The best value of each column among lossy rows (lowest PPL, highest
// accuracy) is bold in Markdown and HTML. Also paired bootstrap CIs of IntactKV vs its baseline.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "exp/store.h"

namespace ikv::exp {

// Metric names the table reads: "ppl" for ppl cells, "acc" (a fraction in [0, 1]) for qa and mmlu.
inline constexpr const char* kPplMetric = "ppl";
inline constexpr const char* kAccMetric = "acc";

enum class ReportFormat { Markdown, Csv, Json, Html };
// "md" | "markdown" | "csv" | "json" | "html"; anything else is an ikv::Error.
ReportFormat parse_report_format(std::string_view name);

struct ReportColumn {
  std::string model;
  std::string task;       // "wikitext2", "arc_easy", "mmlu", or "Avg"
  std::string task_kind;  // "ppl" | "qa" | "mmlu" | "avg"
  std::string metric;     // what the column shows: "ppl", "acc", "acc_norm" (the task's paper metric), "avg"
};

struct ReportRow {
  std::string label;  // "RTN W3g128", "+ IntactKV_[B]", "FP"
  std::string quant;  // short labels the row stands for
  int kv_bits = 16;
  std::string intactkv;
  bool reference = false;                     // fp with kv 16: shown, but never "best"
  std::vector<std::optional<double>> values;  // per column: PPL, or accuracy in percent
  std::vector<bool> best;
};

struct ReportTable {
  std::vector<ReportColumn> columns;
  std::vector<ReportRow> rows;
};

// QA columns show each task's paper metric (eval::TaskSpec::paper_metric: acc_norm for ARC-c,
// HellaSwag and OpenBookQA, acc elsewhere); MMLU shows acc. A model's Avg column is the mean over
// the QA tasks of `qa_average` that it ran (empty = eval::paper_qa_tasks(), the paper's seven: no
// PIQA), shown only when all of them ran.
ReportTable build_report_table(const std::vector<CellRecord>& cells, const std::vector<std::string>& qa_average = {});
// The metric a cell shows in the table: "ppl", or for QA its task's paper metric, else "acc".
std::string table_metric(const CellRecord& c);
// The tasks an Avg column averages (qa_average, or the paper's when empty).
const std::vector<std::string>& averaged_tasks(const std::vector<std::string>& qa_average);

// "RTN W3g128", "QuaRot W4A4 KV4", "FP"; custom labels pass through unchanged.
std::string method_label(const std::string& quant, int kv_bits);
// "" for none, "+ IntactKV_[B]", "+ IntactKV_[P]", "+ IntactKV_[P] (calibrated)", ...
std::string intactkv_row_label(const std::string& intactkv);

// IntactKV variant vs the same method without it, on one task's per-item outcomes.
struct PairedComparison {
  std::string model, quant;
  int kv_bits = 16;
  std::string intactkv, task, metric;
  size_t n = 0;
  double diff = 0, lo = 0, hi = 0;  // mean(variant) - mean(baseline), 95% interval
};
// baseline "none": each IntactKV variant against its method without IntactKV; "bos": every row
// against IntactKV_[B] of its method without the variant's extras (base_method).
std::vector<PairedComparison> intactkv_vs_baseline(const std::vector<CellRecord>& cells, int resamples,
                                                   uint64_t seed, const std::string& baseline = "none");
// A method label without the extras of issue #23's variants (-sw, -static, -sinks, -kiviR):
// "quarot-w4a4-kivi128" -> "quarot-w4a4".
std::string base_method(const std::string& quant);

struct ReportOptions {
  std::string title = "IntactKV results";
  std::vector<std::string> qa_average;      // build_report_table's; empty = the paper's QA tasks
  // Where the numbers come from, in display order ("ikv build" -> "v0.2-3-gabc", "config sha256"
  // -> …, "data wikitext2" -> checksum, …): stored_report_options fills it from the store. Every
  // format shows it, with each cell's wall time.
  std::vector<std::pair<std::string, std::string>> provenance;
  std::vector<std::string> html_fragments;  // appended to the HTML body as is (e.g. inline SVG plots)
  int bootstrap_resamples = 1000;           // 0 leaves the CI section out
  std::string ci_baseline = "none";         // intactkv_vs_baseline's baseline (the config's ci_baseline)
  uint64_t seed = 20240301;
};

// The options a stored run implies: its qa_average and its provenance (the run's row and options).
ReportOptions stored_report_options(const std::map<std::string, std::string>& run_options,
                                    const RunInfo* run = nullptr);

// Markdown / CSV / HTML: the table (and, for Markdown and HTML, the CI section and the tables of
// quant_error cells, exp/quant_error.h), then the provenance and each cell's wall time (CSV: as
// "# what: value" lines before the table).
// JSON: {"provenance": {what: value}, "results": [...]}, results being the flat list compare()
// reads, one entry per metric of every cell:
// {model, quant, kv_bits, intactkv, task_kind, task, metric, value, stderr, n, seconds}.
std::string render_report(const std::vector<CellRecord>& cells, ReportFormat format,
                          const ReportOptions& options = {});
nlohmann::json report_json(const std::vector<CellRecord>& cells);
// A stored run's report: its cells, with the options and provenance the store holds for it, titled
// by its config's file name; HTML with its figures (report_plots.h). Error for an unknown run.
std::string render_stored_report(Store& store, int64_t run_id, ReportFormat format);

// The provenance sections (report_provenance.cc).
std::string provenance_markdown(const std::vector<CellRecord>& cells, const ReportOptions& o);
std::string provenance_html(const std::vector<CellRecord>& cells, const ReportOptions& o);
std::string provenance_csv(const std::vector<CellRecord>& cells, const ReportOptions& o);

}  // namespace ikv::exp
