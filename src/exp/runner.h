// Runs a plan against the results store in this process: cells already stored are reused (resume),
// the rest run in plan order through a caller-supplied executor and are committed one by one as
// they finish. This is the coordinator of exp/distributed.h with one in-process worker: the same
// loop decides cell order, resume and recording for a plain run and for an MPI run.
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
  // Drawn only in a run with one worker (a plain run): -1 when the log is std::cerr and stderr is a
  // terminal; 0 off; 1 on.
  int progress_bar = -1;
  // With several workers (exp/distributed.h):
  double timeout = 60;        // seconds of silence after which a worker (or the coordinator) is lost
  double split_tokens = 1e6;  // PPL/QA/MMLU cells above this estimated cost are split into parts
  int max_parts = 256;        // and into at most this many (also at most 2 per worker)
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
  std::vector<std::string> lost;    // "rank 2", one per worker given up on
  bool ok() const { return failed == 0; }
  bool clean() const { return lost.empty(); }
};

RunSummary run_plan(const Plan& plan, Store& store, const CellExecutor& exec, const RunOptions& options = {});

// sha256 of the resolved config (to_yaml), recorded with each run.
std::string config_sha256(const ExperimentConfig& config);

}  // namespace ikv::exp
