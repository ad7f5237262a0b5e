// The figures of the IntactKV tools, drawn from the data the algorithms return (intactkv/ never
// draws): pivot inspection, MSE sweeps and calibration loss curves, each as PNG and SVG.
#pragma once
#include <string>
#include <vector>

#include "intactkv/calibrate.h"
#include "intactkv/inspect.h"
#include "intactkv/mse_sweep.h"

namespace ikv::exp {

// OUT_DIR/inspect.md (the table) and plots: peak |activation| per token, attention mass per
// layer × position, and a per-layer attention map of the first positions.
void write_inspect_outputs(const intactkv::PivotReport& report, const std::string& out_dir, const std::string& title);
// PATH_STEM.png/.svg: MSE of each decoder layer's output against the IntactKV size.
void plot_mse_sweep(const intactkv::MseSweepResult& r, const std::string& path_stem, const std::string& title);
// STEM.loss.png/.svg (STEM = intactkv::calibration_stem of the output): the loss per optimizer
// step, total and last layer. Nothing for an empty log.
void plot_calibration_loss(const std::vector<intactkv::StepLog>& log, const std::string& stem, const std::string& title);

}  // namespace ikv::exp
