// Runs a plan against the results store: cells already stored are reused (resume), the rest run
// in plan order through a caller-supplied executor and are committed one by one as they finish.
#pragma once
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "exp/plan.h"
#include "exp/store.h"

namespace ikv::exp {

// Computes one cell: fills metrics and outcomes. The runner sets key, labels, seconds and
// finished_at itself. Throwing marks the cell failed; nothing of it is stored.
using CellExecutor = std::function<CellRecord(const Cell&)>;

struct RunOptions {
  bool keep_going = false;      // after a failed cell go on with the next one (default: stop)
  std::ostream* log = nullptr;  // one line per cell; nullptr = std::cerr
  int progress_bar = -1;        // -1: when the log is std::cerr and stderr is a terminal; 0 off; 1 on
};

struct RunSummary {
  int64_t run_id = 0;
  size_t total = 0;     // cells in the plan
  size_t reused = 0;    // found in the store
  size_t executed = 0;  // computed and committed now
  size_t failed = 0;
  bool stopped = false;  // a cell failed and keep_going was off: later cells were not tried
  double seconds = 0;
  std::vector<std::string> errors;  // "[ 3/12] testbed-26M rtn-w3g128 kv16 bos wikitext2: message"
  bool ok() const { return failed == 0; }
};

RunSummary run_plan(const Plan& plan, Store& store, const CellExecutor& exec, const RunOptions& options = {});

// The labels of a cell as stored (key, model, quant, kv_bits, intactkv, task_kind, task).
CellRecord cell_labels(const Cell& cell);

// The pieces of run_plan that the distributed runner (exp/distributed.h) shares:
// Opens a run of the plan in the store (its run row and cells, the "resuming" line); fills
// summary's run_id, total and reused, and returns the indices of the cells still to compute.
std::vector<size_t> start_run(const Plan& plan, Store& store, RunSummary& summary, std::ostream& log);
// Commits a computed cell under the cell's labels, with `seconds` of compute.
void store_cell(Store& store, const Cell& cell, CellRecord record, double seconds);
// "[ 3/12] testbed-26M rtn-w3g128 kv16 bos wikitext2" and "  ppl=185.7", the log line's parts.
std::string cell_head(const Cell& cell, size_t total);
std::string first_metric(const CellRecord& r);

}  // namespace ikv::exp
