// Figures for the HTML report, drawn from a run's cells with plot/plot.h and inlined as SVG:
// the headline metric per method and IntactKV variant (grouped bars, one chart per task), and the
// MSE-vs-IntactKV-size curves of mse_sweep cells.
#pragma once
#include <string>
#include <vector>

#include "exp/store.h"

namespace ikv::exp {

std::vector<std::string> report_figures(const std::vector<CellRecord>& cells);

}  // namespace ikv::exp
