#include "exp/compare.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <tuple>

#include "io/error.h"

namespace ikv::exp {
namespace {

using nlohmann::json;
using Identity = std::tuple<std::string, std::string, int, std::string, std::string, std::string>;

bool accuracy_like(const std::string& metric) { return metric.rfind("acc", 0) == 0; }

struct Entry {
  Identity id;
  std::optional<double> value;
};

std::vector<Entry> entries(const json& report, const std::string& which) {
  // A report is {"provenance": …, "results": [...]}; older reports (and baselines) are the list.
  const json& doc = report.is_object() && report.contains("results") ? report["results"] : report;
  if (!doc.is_array()) fail(which, " report is not a JSON list");
  std::vector<Entry> out;
  std::map<Identity, size_t> seen;
  for (size_t i = 0; i < doc.size(); ++i) {
    const json& e = doc[i];
    auto text = [&](const char* field) {
      if (!e.is_object() || !e.contains(field) || !e[field].is_string())
        fail(which, " report: entry ", i, " has no string \"", field, "\"");
      return e[field].get<std::string>();
    };
    if (!e.contains("kv_bits") || !e["kv_bits"].is_number_integer())
      fail(which, " report: entry ", i, " has no integer \"kv_bits\"");
    Entry entry{{text("model"), text("quant"), e["kv_bits"].get<int>(), text("intactkv"), text("task"),
                 text("metric")},
                {}};
    if (!e.contains("value") || !(e["value"].is_number() || e["value"].is_null()))
      fail(which, " report: entry ", i, " has no numeric \"value\"");
    if (e["value"].is_number()) entry.value = e["value"].get<double>();
    if (!seen.emplace(entry.id, i).second)
      fail(which, " report: entry ", i, " repeats an earlier entry");
    out.push_back(std::move(entry));
  }
  return out;
}

CompareRow make_row(const Identity& id) {
  CompareRow r;
  std::tie(r.model, r.quant, r.kv_bits, r.intactkv, r.task, r.metric) = id;
  return r;
}

std::string number(const std::optional<double>& v) {
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", *v);
  return buf;
}

}  // namespace

const char* to_string(CompareStatus s) {
  switch (s) {
    case CompareStatus::Ok: return "OK";
    case CompareStatus::Regressed: return "REGRESSED";
    case CompareStatus::Improved: return "IMPROVED";
    case CompareStatus::Missing: return "MISSING";
    case CompareStatus::New: return "NEW";
  }
  return "?";
}

size_t CompareResult::count(CompareStatus status) const {
  size_t n = 0;
  for (const auto& r : rows) n += r.status == status;
  return n;
}

CompareResult compare(const json& current_doc, const json& baseline_doc, const Tolerances& tol,
                      const CompareNames& names) {
  const std::vector<Entry> baseline = entries(baseline_doc, names.baseline);
  const std::vector<Entry> current = entries(current_doc, names.current);
  // Nothing to compare against would pass every run: an empty baseline is a broken baseline.
  if (baseline.empty()) fail(names.baseline, " report is empty: no metrics to compare against");
  std::map<Identity, const Entry*> current_by_id;
  for (const auto& e : current) current_by_id[e.id] = &e;

  CompareResult result;
  std::map<Identity, bool> matched;
  for (const auto& b : baseline) {
    CompareRow row = make_row(b.id);
    const bool acc = accuracy_like(row.metric);
    char tolerance[32];
    if (acc)
      std::snprintf(tolerance, sizeof tolerance, "±%g pt", tol.acc_abs_points);
    else
      std::snprintf(tolerance, sizeof tolerance, "±%g%%", 100 * tol.ppl_rel);
    row.tolerance = tolerance;
    row.baseline = b.value;
    auto it = current_by_id.find(b.id);
    if (it == current_by_id.end()) {
      row.status = CompareStatus::Missing;
    } else {
      matched[b.id] = true;
      row.current = it->second->value;
      if (!row.baseline && !row.current) {
        row.status = CompareStatus::Ok;
      } else if (!row.baseline || !row.current) {
        row.status = CompareStatus::Regressed;  // a value appeared or vanished
      } else {
        row.delta = *row.current - *row.baseline;
        const bool within = acc ? std::fabs(row.delta) * 100 <= tol.acc_abs_points + 1e-9
                                : std::fabs(row.delta) <= tol.ppl_rel * std::fabs(*row.baseline);
        const bool better = acc ? row.delta > 0 : row.delta < 0;
        row.status = within ? CompareStatus::Ok : better ? CompareStatus::Improved : CompareStatus::Regressed;
      }
    }
    result.ok &= row.status == CompareStatus::Ok;
    result.rows.push_back(std::move(row));
  }
  for (const auto& c : current) {
    if (matched.count(c.id)) continue;
    CompareRow row = make_row(c.id);
    row.current = c.value;
    row.status = CompareStatus::New;
    result.rows.push_back(std::move(row));
  }
  return result;
}

std::string render_compare(const CompareResult& r) {
  std::ostringstream os;
  os << "| Model | Quant | KV | IntactKV | Task | Metric | Baseline | Current | Delta | Tolerance | Status "
        "|\n"
     << "|---|---|---:|---|---|---|---:|---:|---:|---|---|\n";
  for (const auto& row : r.rows) {
    char delta[32] = "-";
    if (row.baseline && row.current) std::snprintf(delta, sizeof delta, "%+.4f", row.delta);
    os << "| " << row.model << " | " << row.quant << " | " << row.kv_bits << " | " << row.intactkv << " | "
       << row.task << " | " << row.metric << " | " << number(row.baseline) << " | " << number(row.current)
       << " | " << delta << " | " << row.tolerance << " | " << to_string(row.status) << " |\n";
  }
  os << "\n"
     << (r.ok ? "OK" : "FAILED") << ": " << r.count(CompareStatus::Ok) << " ok, "
     << r.count(CompareStatus::Regressed) << " regressed, " << r.count(CompareStatus::Improved)
     << " improved, " << r.count(CompareStatus::Missing) << " missing, " << r.count(CompareStatus::New)
     << " new\n";
  return os.str();
}

}  // namespace ikv::exp
