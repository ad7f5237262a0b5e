// A stored run's report, the one way `ikv-eval run` (after running) and `ikv-eval report` render it.
#include <filesystem>

#include "exp/report.h"
#include "exp/report_plots.h"
#include "io/error.h"

namespace ikv::exp {

std::string render_stored_report(Store& store, int64_t run_id, ReportFormat format) {
  const std::optional<RunInfo> run = store.get_run(run_id);
  if (!run) fail(store.path(), ": no run ", run_id);
  const std::vector<CellRecord> cells = store.cells_of_run(run_id);
  ReportOptions opt = stored_report_options(store.run_options(run_id), &*run);
  opt.title = std::filesystem::path(run->config_path).stem().string();
  if (format == ReportFormat::Html) opt.html_fragments = report_figures(cells);
  return render_report(cells, format, opt);
}

}  // namespace ikv::exp
