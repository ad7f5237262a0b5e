// Where a report's numbers come from: the build, the config, the machine, the identities every
// cell key was made of, and each cell's wall time, in every report format.
#include <cstdio>
#include <sstream>

#include "exp/report.h"
#include "io/text.h"

namespace ikv::exp {
namespace {

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", s);
  return buf;
}

// "testbed-26M · RTN W3g128 · + IntactKV_[B] · wikitext2"
std::string cell_name(const CellRecord& c) {
  const std::string variant = intactkv_row_label(c.intactkv);
  return c.model + " · " + method_label(c.quant, c.kv_bits) + (variant.empty() ? "" : " · " + variant) + " · " +
         c.task;
}

}  // namespace

ReportOptions stored_report_options(const std::map<std::string, std::string>& options, const RunInfo* run) {
  ReportOptions o;
  if (auto it = options.find("qa_average"); it != options.end()) {
    std::stringstream names(it->second);
    for (std::string name; std::getline(names, name, ',');)
      if (!name.empty()) o.qa_average.push_back(name);
  }
  if (auto it = options.find("ci_baseline"); it != options.end()) o.ci_baseline = it->second;
  auto add = [&](const std::string& what, const std::string& value) {
    if (!value.empty()) o.provenance.emplace_back(what, value);
  };
  auto option = [&](const std::string& name) {
    auto it = options.find(name);
    return it == options.end() ? std::string() : it->second;
  };
  add("ikv build", option("build"));
  if (run) {
    add("engine", run->ikv_version);
    add("config", run->config_path);
    add("config sha256", run->config_sha256);
    add("started", run->started_at);
    add("finished", run->finished_at);
    add("host", run->hostname);
    add("CPU", run->cpu_model);
    add("cores", run->cores > 0 ? std::to_string(run->cores) : "");
  }
  add("threads", option("threads"));
  // Prefixed options, one row each: dtype per model, then the identities of models, data and files.
  for (const std::string kind : {"dtype", "model", "data", "file"})
    for (const auto& [name, value] : options)
      if (name.starts_with(kind + ":")) add(kind + " " + name.substr(kind.size() + 1), value);
  return o;
}

std::string provenance_markdown(const std::vector<CellRecord>& cells, const ReportOptions& o) {
  std::ostringstream os;
  if (!o.provenance.empty()) {
    os << "\n## Provenance\n\n| | |\n|---|---|\n";
    for (const auto& [what, value] : o.provenance) os << "| " << io::escape_md(what) << " | " << io::escape_md(value) << " |\n";
  }
  if (!cells.empty()) {
    os << "\n## Wall time per cell\n\n| Cell | s |\n|---|---:|\n";
    for (const CellRecord& c : cells) os << "| " << io::escape_md(cell_name(c)) << " | " << seconds_text(c.seconds) << " |\n";
  }
  return os.str();
}

std::string provenance_html(const std::vector<CellRecord>& cells, const ReportOptions& o) {
  std::ostringstream os;
  if (!o.provenance.empty()) {
    os << "<h2>Provenance</h2>\n<table class=\"provenance\">\n";
    for (const auto& [what, value] : o.provenance)
      os << "<tr><th>" << io::escape_html(what) << "</th><td>" << io::escape_html(value) << "</td></tr>\n";
    os << "</table>\n";
  }
  if (!cells.empty()) {
    os << "<h2>Wall time per cell</h2>\n<table>\n<tr><th>Cell</th><th>s</th></tr>\n";
    for (const CellRecord& c : cells)
      os << "<tr><td>" << io::escape_html(cell_name(c)) << "</td><td>" << seconds_text(c.seconds) << "</td></tr>\n";
    os << "</table>\n";
  }
  return os.str();
}

// Comment lines ("# what: value"), which CSV readers skip with comment='#'.
std::string provenance_csv(const std::vector<CellRecord>& cells, const ReportOptions& o) {
  std::ostringstream os;
  auto line = [&](const std::string& s) {
    std::string flat = s;
    for (char& ch : flat)
      if (ch == '\n' || ch == '\r') ch = ' ';
    os << "# " << flat << "\n";
  };
  for (const auto& [what, value] : o.provenance) line(what + ": " + value);
  for (const CellRecord& c : cells) line("seconds: " + cell_name(c) + ": " + seconds_text(c.seconds));
  return os.str();
}

}  // namespace ikv::exp
