// The coordinator's bookkeeping in a distributed run (exp/runner.h): which units wait, which
// worker runs what, which shared artifacts exist or are being made, and the parts of split cells
// collected so far. Plain data and decisions, no I/O: the coordinator loop drives it, and tests
// drive it directly.
//
// Assignment (assign): the first pending unit, in plan order, with the best affinity for the
// asking worker — its artifacts already in that worker's memory (+4 each), or on disk (+1 each),
// the same model as its last unit (+2), a dataset it has already loaded for that model (+1). A unit needing an artifact that another worker is making
// right now is skipped, so every artifact is made once; if nothing else is left the worker waits.
// With keep_plan_order (a run with one worker) the first unit that may start is given out.
#pragma once
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "exp/dist_messages.h"
#include "exp/plan.h"

namespace ikv::exp {

class Scheduler {
 public:
  // `todo`: plan indices to compute, in plan order; parts[i] > 1 splits todo[i] into that many
  // parts. `known`: artifacts already on disk. A unit whose worker is lost is re-queued at most
  // max_attempts - 1 times, then its cell fails.
  Scheduler(const Plan& plan, const std::vector<size_t>& todo, const std::vector<int>& parts,
            const std::vector<ArtifactRecord>& known, int max_attempts = 3);

  // What finished a cell: its record (all parts merged), or why it failed.
  struct Finished {
    size_t cell = 0;
    bool ok = false;
    CellRecord record;
    std::string error;
    int parts = 1;
    double seconds = 0;  // compute time, summed over parts
  };

  // The next unit for `worker` (now running it), or nullopt when it may start nothing now.
  std::optional<WorkUnit> assign(int worker);
  // The result of the unit `worker` runs. Returns the cell when this completes it (or fails it).
  // Throws ikv::Error when the worker runs no such unit.
  std::optional<Finished> complete(int worker, const UnitResult& result);
  // `worker` is gone: its unit goes back to the queue, or fails its cell after max_attempts.
  std::optional<Finished> lost(int worker);
  void stop_new() { stopped_ = true; }  // hand out nothing more (a cell failed, no --keep-going)
  void keep_plan_order() { plan_order_ = true; }  // no affinity: the first unit that may start

  bool finished() const { return running_.empty() && (pending_.empty() || stopped_); }
  const WorkUnit* running(int worker) const;
  std::vector<size_t> unfinished_cells() const;  // pending or running, in plan order
  const std::map<std::string, ArtifactRecord>& known() const { return known_; }

 private:
  struct Pending {
    size_t cell;
    int part, parts, attempt;
  };
  std::vector<std::string> artifact_keys(size_t cell) const;
  void requeue(const WorkUnit& unit);
  std::optional<Finished> fail_cell(size_t cell, int parts, const std::string& error);

  const Plan& plan_;
  int max_attempts_;
  bool stopped_ = false, plan_order_ = false;
  std::vector<Pending> pending_;  // sorted by (cell, part)
  std::map<int, WorkUnit> running_;
  std::map<std::string, ArtifactRecord> known_;
  std::map<std::string, int> making_;          // artifact key -> worker making it
  std::map<int, std::set<std::string>> held_;  // artifacts in each worker's memory
  std::map<int, std::set<std::string>> warm_;  // (model, dataset) pairs each worker has loaded
  std::map<int, std::string> last_model_;
  std::map<size_t, std::vector<std::optional<CellPart>>> parts_;  // split cells in progress
  std::map<size_t, double> seconds_;
  std::set<size_t> failed_;
};

}  // namespace ikv::exp
