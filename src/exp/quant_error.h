// The layer reconstruction error of a weight quantizer: its relative output error on every decoder
// linear, on held-out activations of the FP model (quant/recon_error.h). One study for the YAML task
// `tasks: {quant_error: ...}` (a stored cell per rtn/gptq/awq quantizer, whose tables the report
// draws) and for `ikv-eval quant-error` (one quantizer after the other, one table).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "exp/config.h"
#include "exp/model_setup.h"
#include "exp/store.h"

namespace ikv::exp {

struct QuantErrorResult {
  std::vector<std::string> linears;  // "5.down_proj" (layer.linear), in model order
  std::vector<double> error;         // per linear; empty when the quantizer failed
  std::string failure;               // why a calibrated quantizer failed (any other problem is an Error)
  double seconds = 0;                // quantization time
  int64_t heldout_tokens = 0;
  size_t calib_sequences = 0;  // gptq, awq
  int64_t calib_tokens = 0;
};

// The study of `q` (rtn, gptq or awq; calibration samples drawn with `seed`) on `fp`, the FP model
// at fp32, whose weights it copies: the held-out text must not be the calibration data.
QuantErrorResult run_quant_error(const std::string& data_root, const LoadedModel& fp, const QuantizerSpec& q,
                                 const QuantErrorTask& task, int64_t seed);
double mean_error(const std::vector<double>& error);
// A quant_error cell's record: the mean error ("error_mean", first) and each linear's
// ("error@5.down_proj"), over the held-out tokens. An Error when the quantizer failed.
CellRecord quant_error_record(const QuantErrorResult& r);

// A table's column: its header and per-linear errors (empty: the quantizer failed).
struct QuantErrorColumn {
  std::string label;
  std::vector<double> error;
};
// The table as Markdown-formatted cells, header first: a row per linear (layer, linear), the mean,
// and, when column 0 is RTN (rtn_first), † where a quantizer is not below RTN and a row counting
// the linears where it is. markdown_rows joins them (two left-aligned columns, the rest right).
std::vector<std::vector<std::string>> quant_error_rows(const std::vector<std::string>& linears,
                                                       const std::vector<QuantErrorColumn>& columns, bool rtn_first);
std::string markdown_rows(const std::vector<std::vector<std::string>>& rows);

// The report's tables of stored quant_error cells: one per model and setting ("w3g128"), a column
// per quantizer, RTN's first (the baseline) when the run has it.
struct QuantErrorTable {
  std::string title;  // "testbed-26M, w3g128"
  std::vector<std::vector<std::string>> rows;
};
std::vector<QuantErrorTable> quant_error_tables(const std::vector<CellRecord>& cells);

}  // namespace ikv::exp
