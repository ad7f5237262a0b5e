// Regression check of a report against a baseline report (both the JSON list render_report
// writes). A metric is matched by (model, quant, kv_bits, intactkv, task, metric).
// Accuracy-like metrics (names starting with "acc", fractions in [0, 1]) may move by
// acc_abs_points percentage points; every other metric (ppl, kld, ...) by ppl_rel of the baseline.
#pragma once
#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace ikv::exp {

struct Tolerances {
  double ppl_rel = 0.005;       // relative, for ppl and other lower-is-better metrics
  double acc_abs_points = 1.0;  // absolute, in percentage points
};

// OK: within tolerance. REGRESSED / IMPROVED: outside it, worse / better (an improvement also
// fails the check: the baseline should then be updated on purpose). MISSING: in the baseline, not
// in the current report (fails). NEW: only in the current report (does not fail).
enum class CompareStatus { Ok, Regressed, Improved, Missing, New };
const char* to_string(CompareStatus status);  // "OK", "REGRESSED", "IMPROVED", "MISSING", "NEW"

struct CompareRow {
  std::string model, quant;
  int kv_bits = 16;
  std::string intactkv, task, metric;
  std::optional<double> baseline, current;  // nullopt when absent (or stored as null)
  double delta = 0;                         // current - baseline (0 when either is absent)
  std::string tolerance;                    // "±0.5%" or "±1 pt"
  CompareStatus status = CompareStatus::Ok;
};

struct CompareResult {
  std::vector<CompareRow> rows;  // baseline order, then NEW entries in current order
  bool ok = true;
  size_t count(CompareStatus status) const;
};

// How errors name the two documents (the CLI passes "FILE: current" / "FILE: baseline").
struct CompareNames {
  std::string current = "compare: current", baseline = "compare: baseline";
};
// Throws ikv::Error when either document is not a list of such entries or repeats an entry, or
// the baseline is empty (it would pass anything).
CompareResult compare(const nlohmann::json& current, const nlohmann::json& baseline,
                      const Tolerances& tolerances = {}, const CompareNames& names = {});

// Markdown table (metric, baseline, current, delta, tolerance, status) and a summary line.
std::string render_compare(const CompareResult& result);

}  // namespace ikv::exp
