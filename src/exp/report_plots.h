// Figures for the HTML report, drawn from a run's cells with plot/plot.h and inlined as SVG: per
// task, the change each IntactKV variant makes against its method without it, with 95% CIs
// (grouped bars from zero); the MSE-vs-IntactKV-size curves of mse_sweep cells; calibration loss.
#pragma once
#include <string>
#include <vector>

#include "exp/store.h"

namespace ikv::exp {

std::vector<std::string> report_figures(const std::vector<CellRecord>& cells);

}  // namespace ikv::exp
