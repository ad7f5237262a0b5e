// ikv-eval report / compare: a stored run's table in any format, and the CI regression check of
// one JSON report against a baseline.
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "exp/compare.h"
#include "exp/report.h"
#include "exp/store.h"
#include "ikv-eval_commands.h"
#include "io/mapped_file.h"
#include "io/json.h"

namespace ikv::cli {
namespace {

struct ReportArgs {
  std::string out = "results", format = "md";
  int64_t run = 0;
  bool latest = false;
};

void run_report(const ReportArgs& a) {
  exp::ReportFormat fmt = exp::parse_report_format(a.format);
  const std::string db = exp::store_path(a.out);
  if (!std::filesystem::exists(db)) fail(db, ": no results store (run `ikv-eval run CONFIG --out ", a.out, "` first)");
  exp::Store store(db, exp::Store::Access::ReadOnly);
  int64_t id = a.run;
  if (a.latest || id == 0) {
    auto latest = store.latest_run();
    if (!latest) fail(db, ": the store holds no run");
    id = latest->id;
  }
  std::printf("%s", exp::render_stored_report(store, id, fmt).c_str());
}

struct CompareArgs {
  std::string current, baseline, tol_ppl = "0.5%", tol_acc = "1.0pt";
};

double parse_tolerance(const std::string& s, const char* suffix, const char* flag) {
  std::string num = s;
  if (num.size() >= std::strlen(suffix) && num.compare(num.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
    num.resize(num.size() - std::strlen(suffix));
  try {
    size_t used = 0;
    double v = std::stod(num, &used);
    if (used == num.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  fail(flag, " '", s, "' is not a tolerance like 0.5", suffix);
}

int run_compare(const CompareArgs& a) {
  auto read = [](const std::string& path) { return io::parse_json(io::read_text_file(path), path); };
  exp::Tolerances tol;
  tol.ppl_rel = parse_tolerance(a.tol_ppl, "%", "--tol-ppl") / 100.0;
  tol.acc_abs_points = parse_tolerance(a.tol_acc, "pt", "--tol-acc");
  exp::CompareResult r =
      exp::compare(read(a.current), read(a.baseline), tol, {a.current + ": current", a.baseline + ": baseline"});
  std::printf("%s", exp::render_compare(r).c_str());
  return r.ok ? 0 : 1;
}

}  // namespace

void add_report_commands(CLI::App& app, int& exit_code) {
  static ReportArgs rep;
  CLI::App* report = app.add_subcommand("report", "print a run's table (paper layout)");
  report->add_option("run", rep.run, "run id (default: the latest)");
  report->add_flag("--latest", rep.latest, "the latest run");
  report->add_option("--out", rep.out, "results folder holding ikv.sqlite");
  report->add_option("--format", rep.format, "md | csv | json | html");
  report->callback([] { run_report(rep); });

  static CompareArgs cmp;
  CLI::App* compare = app.add_subcommand("compare", "regression table of a JSON report against a baseline");
  compare->add_option("current", cmp.current, "current report (JSON)")->required();
  compare->add_option("baseline", cmp.baseline, "baseline report (JSON)")->required();
  compare->add_option("--tol-ppl", cmp.tol_ppl, "relative tolerance of PPL-like metrics, e.g. 0.5%");
  compare->add_option("--tol-acc", cmp.tol_acc, "absolute tolerance of accuracies, e.g. 1.0pt");
  compare->callback([&] { exit_code = run_compare(cmp); });
}

}  // namespace ikv::cli
