// Renderers of the report table: Markdown, CSV, self-contained HTML, and the flat JSON list.
#include "exp/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "exp/quant_error.h"
#include "io/text.h"

namespace ikv::exp {
namespace {

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string signed_fixed(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%+.4f", v);
  return buf;
}

bool single_model(const ReportTable& t) {
  for (const auto& c : t.columns)
    if (c.model != t.columns.front().model) return false;
  return true;
}

// A column's header: the task, and its metric where that is not plain accuracy or PPL.
std::string heading(const ReportColumn& c) {
  return c.metric == "acc_norm" ? c.task + " (acc_norm)" : c.task;
}

// What every number is: the metric of each column, exactly which tasks Avg averages, and where a
// row or a text departs from the paper.
std::string ci_heading(const ReportOptions& o) {
  return o.ci_baseline == "bos" ? "Against IntactKV_[B] of the same method" : "IntactKV vs baseline";
}

// A CI row's variant; rows without IntactKV appear only against IntactKV_[B] (ci_baseline: bos).
std::string ci_variant_label(const std::string& intactkv) {
  return intactkv == "none" ? "no IntactKV" : intactkv_row_label(intactkv);
}

std::string legend(const ReportTable& t, const ReportOptions& o) {
  std::string ppl;
  std::vector<std::pair<std::string, std::string>> by_metric;  // metric -> its tasks
  bool avg = false, hellaswag = false, prompt_rows_on_qa = false;
  for (const auto& c : t.columns) {
    avg |= c.task_kind == "avg";
    hellaswag |= c.task.starts_with("hellaswag");
    if (c.task_kind == "avg") continue;
    if (c.task_kind == "ppl") {
      if (ppl.find(c.task) == std::string::npos) ppl += (ppl.empty() ? "" : ", ") + c.task;
      continue;
    }
    auto it = std::find_if(by_metric.begin(), by_metric.end(), [&](const auto& m) { return m.first == c.metric; });
    if (it == by_metric.end()) it = by_metric.insert(by_metric.end(), {c.metric, ""});
    if (it->second.find(c.task) == std::string::npos) it->second += (it->second.empty() ? "" : ", ") + c.task;
  }
  for (const auto& row : t.rows)
    for (size_t i = 0; i < t.columns.size(); ++i)
      prompt_rows_on_qa |= row.values[i] && t.columns[i].task_kind != "ppl" &&
                           intactkv_row_label(row.intactkv).starts_with("+ IntactKV_[P]");
  std::string s;
  if (!ppl.empty()) s += "PPL for " + ppl + " (lower is better). ";
  if (!by_metric.empty()) {
    s += "Accuracy in % (higher is better):";
    for (size_t i = 0; i < by_metric.size(); ++i)
      s += std::string(i ? ";" : "") + " " + by_metric[i].first + " for " + by_metric[i].second;
    s += ". ";
  }
  if (avg) {
    std::string tasks;
    for (const auto& name : averaged_tasks(o.qa_average)) tasks += (tasks.empty() ? "" : ", ") + name;
    s += "Avg: mean of " + tasks + (o.qa_average.empty() ? " (the paper's zero-shot suite)" : "") + ". ";
  }
  if (prompt_rows_on_qa)
    s += "IntactKV_[P] rows on QA/MMLU are beyond the paper (it uses the system prompt only for MT-bench). ";
  if (hellaswag)
    s += "hellaswag: the bundled llama.cpp conversion of the text (ctx_b not capitalized, bracketed text kept) "
         "unless datasets/hellaswag/hellaswag_val.jsonl is in the data root (then lm-eval's preprocessing). ";
  return s + "Bold: best among quantized rows.";
}


std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string markdown(const ReportTable& t, const std::vector<PairedComparison>& cis, const ReportOptions& o) {
  std::ostringstream os;
  const bool one = single_model(t);
  os << "# " << io::escape_md(o.title) << "\n\n| Method |";
  for (const auto& c : t.columns) os << " " << io::escape_md(one ? heading(c) : c.model + " " + heading(c)) << " |";
  os << "\n|---|";
  for (size_t i = 0; i < t.columns.size(); ++i) os << "---:|";
  os << "\n";
  for (const auto& row : t.rows) {
    os << "| " << io::escape_md(row.label) << " |";
    for (size_t i = 0; i < row.values.size(); ++i) {
      if (!row.values[i])
        os << " - |";
      else if (row.best[i])
        os << " **" << fixed(*row.values[i], 2) << "** |";
      else
        os << " " << fixed(*row.values[i], 2) << " |";
    }
    os << "\n";
  }
  os << "\n" << legend(t, o) << "\n";
  if (!cis.empty()) {
    os << "\n## " << ci_heading(o) << " (paired bootstrap, 95% CI)\n\n"
       << "| Model | Method | Variant | Task | Metric | n | Δ | 95% CI "
          "|\n|---|---|---|---|---|---:|---:|---|\n";
    for (const auto& c : cis)
      os << "| " << io::escape_md(c.model) << " | " << io::escape_md(method_label(c.quant, c.kv_bits)) << " | "
         << io::escape_md(ci_variant_label(c.intactkv)) << " | " << io::escape_md(c.task) << " | " << c.metric
         << " | " << c.n << " | " << signed_fixed(c.diff) << " | [" << signed_fixed(c.lo) << ", "
         << signed_fixed(c.hi) << "] |\n";
  }
  return os.str();
}

// kv_protect: sinks cells: how many tokens per window kept their K/V unquantized.
std::string sink_section(const std::vector<CellRecord>& cells) {
  std::ostringstream os;
  for (const auto& c : cells)
    if (const Metric* m = c.metric("sink_tokens_per_window")) {
      if (os.tellp() == 0)
        os << "\n## Sink tokens kept per window (kv_protect: sinks)\n\n| Model | Method | Variant | Task | tokens "
              "kept per window | windows |\n|---|---|---|---|---:|---:|\n";
      os << "| " << io::escape_md(c.model) << " | " << io::escape_md(method_label(c.quant, c.kv_bits)) << " | "
         << io::escape_md(ci_variant_label(c.intactkv)) << " | " << io::escape_md(c.task) << " | " << fixed(m->value, 2)
         << " | " << m->n << " |\n";
    }
  return os.str();
}

std::string csv(const ReportTable& t) {
  std::ostringstream os;
  os << "method";
  for (const auto& c : t.columns) os << "," << csv_field(c.model + "/" + heading(c));
  os << "\n";
  for (const auto& row : t.rows) {
    os << csv_field(row.label);
    for (const auto& v : row.values) os << "," << (v ? fixed(*v, 4) : "");
    os << "\n";
  }
  return os.str();
}

constexpr const char* kCss =
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}"
    "th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}"
    "th:first-child,td:first-child{text-align:left}"
    "thead th{border-bottom:2px solid #444}"
    "td.variant{padding-left:1.6em;color:#444}"
    "p.note{color:#555;font-size:90%}"
    ".figure{margin:1.5em 0}";

std::string html(const ReportTable& t, const std::vector<PairedComparison>& cis, const ReportOptions& o,
                 const std::string& provenance) {
  std::ostringstream os;
  os << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>"
     << io::escape_html(o.title) << "</title>\n<style>" << kCss << "</style>\n</head>\n<body>\n<h1>"
     << io::escape_html(o.title) << "</h1>\n";
  os << "<table>\n<thead>\n<tr><th rowspan=\"2\">Method</th>";
  for (size_t i = 0; i < t.columns.size();) {  // one spanning cell per model
    size_t span = 0;
    while (i + span < t.columns.size() && t.columns[i + span].model == t.columns[i].model) ++span;
    os << "<th colspan=\"" << span << "\">" << io::escape_html(t.columns[i].model) << "</th>";
    i += span;
  }
  os << "</tr>\n<tr>";
  for (const auto& c : t.columns) os << "<th>" << io::escape_html(heading(c)) << "</th>";
  os << "</tr>\n</thead>\n<tbody>\n";
  for (const auto& row : t.rows) {
    os << "<tr><td" << (row.intactkv == "none" ? "" : " class=\"variant\"") << ">" << io::escape_html(row.label)
       << "</td>";
    for (size_t i = 0; i < row.values.size(); ++i) {
      if (!row.values[i])
        os << "<td>-</td>";
      else if (row.best[i])
        os << "<td><b>" << fixed(*row.values[i], 2) << "</b></td>";
      else
        os << "<td>" << fixed(*row.values[i], 2) << "</td>";
    }
    os << "</tr>\n";
  }
  os << "</tbody>\n</table>\n<p class=\"note\">" << io::escape_html(legend(t, o)) << "</p>\n";
  if (!cis.empty()) {
    os << "<h2>" << ci_heading(o) << " (paired bootstrap, 95% "
          "CI)</h2>\n<table>\n<thead><tr><th>Model</th><th>Method</th>"
          "<th>Variant</th><th>Task</th><th>Metric</th><th>n</th><th>&Delta;</th><th>95% "
          "CI</th></tr></thead>\n<tbody>\n";
    for (const auto& c : cis)
      os << "<tr><td>" << io::escape_html(c.model) << "</td><td>" << io::escape_html(method_label(c.quant, c.kv_bits))
         << "</td><td>" << io::escape_html(ci_variant_label(c.intactkv)) << "</td><td>" << io::escape_html(c.task)
         << "</td><td>" << io::escape_html(c.metric) << "</td><td>" << c.n << "</td><td>" << signed_fixed(c.diff)
         << "</td><td>[" << signed_fixed(c.lo) << ", " << signed_fixed(c.hi) << "]</td></tr>\n";
    os << "</tbody>\n</table>\n";
  }
  for (const auto& fragment : o.html_fragments) os << "<div class=\"figure\">\n" << fragment << "\n</div>\n";
  os << provenance << "</body>\n</html>\n";
  return os.str();
}

// The tables of the run's quant_error cells (exp/quant_error.h), in Markdown or HTML.
std::string quant_error_sections(const std::vector<CellRecord>& cells, bool as_html) {
  const std::string note = "Relative output error ‖X·W_fpᵀ − X·W_effᵀ‖_F / ‖X·W_fpᵀ‖_F of every decoder linear on "
                           "held-out activations of the FP model (task quant_error, as `ikv-eval quant-error`).";
  std::ostringstream os;
  for (const QuantErrorTable& t : quant_error_tables(cells)) {
    const bool marks = t.rows.back()[1].find("below RTN") != std::string::npos;
    const std::string title = "Layer reconstruction error: " + t.title;
    const std::string more = marks ? " † marks an error not below RTN's." : "";
    if (!as_html) {
      os << "\n## " << io::escape_md(title) << "\n\n" << note << more << "\n\n" << markdown_rows(t.rows);
      continue;
    }
    os << "<h2>" << io::escape_html(title) << "</h2>\n<p class=\"note\">" << io::escape_html(note + more)
       << "</p>\n<table>\n";
    for (size_t r = 0; r < t.rows.size(); ++r) {
      os << (r == 0 ? "<thead><tr>" : "<tr>");
      for (const std::string& cell : t.rows[r]) {
        std::string text = io::escape_html(cell);  // Markdown's **bold** as <b>
        for (bool open = true; text.find("**") != std::string::npos; open = !open)
          text.replace(text.find("**"), 2, open ? "<b>" : "</b>");
        os << (r == 0 ? "<th>" : "<td>") << text << (r == 0 ? "</th>" : "</td>");
      }
      os << (r == 0 ? "</tr></thead>\n<tbody>\n" : "</tr>\n");
    }
    os << "</tbody>\n</table>\n";
  }
  return os.str();
}

}  // namespace

nlohmann::json report_json(const std::vector<CellRecord>& cells) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : cells)
    for (const auto& m : c.metrics) {
      nlohmann::json entry = {
          {"model", c.model},         {"quant", c.quant}, {"kv_bits", c.kv_bits}, {"intactkv", c.intactkv},
          {"task_kind", c.task_kind}, {"task", c.task},   {"metric", m.name},     {"value", m.value},
          {"stderr", m.std_err},      {"n", m.n},         {"seconds", c.seconds}};
      if (!std::isfinite(m.value)) entry["value"] = nullptr;
      if (!std::isfinite(m.std_err)) entry["stderr"] = nullptr;
      out.push_back(std::move(entry));
    }
  return out;
}

std::string render_report(const std::vector<CellRecord>& cells, ReportFormat format,
                          const ReportOptions& options) {
  if (format == ReportFormat::Json) {
    nlohmann::json provenance = nlohmann::json::object();
    for (const auto& [what, value] : options.provenance) provenance[what] = value;
    return nlohmann::json{{"provenance", provenance}, {"results", report_json(cells)}}.dump(2) + "\n";
  }
  const ReportTable table = build_report_table(cells, options.qa_average);
  if (format == ReportFormat::Csv) return provenance_csv(cells, options) + csv(table);
  const auto cis = intactkv_vs_baseline(cells, options.bootstrap_resamples, options.seed, options.ci_baseline);
  return format == ReportFormat::Html
             ? html(table, cis, options, quant_error_sections(cells, true) + provenance_html(cells, options))
             : markdown(table, cis, options) + sink_section(cells) + quant_error_sections(cells, false) +
                   provenance_markdown(cells, options);
}

}  // namespace ikv::exp
