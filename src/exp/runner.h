// The run loop of `ikv-eval run`: one coordinator and any number of workers over a message link.
// It alone decides cell order, resume (cells already in the store are reused) and recording, for
// a plain run (run_plan: one worker computing in the caller's thread) and under MPI
// (exp/mpi_runner.h: a worker thread of rank 0 and every other rank; tests use threads, LocalHub).
//
// Roles. The coordinator (MPI rank 0) plans, owns the results store and writes the reports; it
// hands out units of work on request and records what comes back, one transaction per finished
// cell, so a killed run resumes from the store. Workers (every rank, rank 0 included through a
// local thread) build the same plan themselves from the same config (the coordinator checks the
// plan digest: same config, same model and data files) and compute units with an Executor of
// their own, caching models, quantized weights and prefixes.
//
// Units. A unit is a cell, or a part of a large cell: PPL, QA and MMLU cells estimated above
// split_tokens are cut into item ranges (exp/executor.h: CellPart) whose per-item values are
// merged on the coordinator in item order. merge_parts is also how a whole cell is assembled on
// a single process, so a metric has the same bits whichever way its cell was cut — provided each
// process uses the same thread count (the forward pass's GEMMs may round differently with
// another one; `--threads 1` everywhere gives identical results for any number of ranks).
//
// Artifacts. Quantized weights and IntactKV prefixes are written by the worker that makes them
// into RESULTS/artifacts (shared folder on a cluster), reported with its result and recorded in
// the store by the coordinator, which hands the records out with every later unit that needs
// them. The scheduler (exp/dist_scheduler.h) never gives out a unit whose artifact another worker
// is making, and prefers workers that already hold a unit's artifacts in memory, so each is
// computed once. Without a shared folder a worker that cannot find the file makes its own copy.
//
// Liveness. Workers compute on a second thread while their first one talks: a heartbeat every
// timeout/10 s while busy, a new request after each result or "wait". A worker silent for
// `timeout` seconds is lost: its unit is re-queued (after 3 losses its cell fails) and the run
// goes on without it; whatever it sends afterwards is answered with "stop". A worker that hears
// nothing from the coordinator for `timeout` seconds after a request gives up. Whether the MPI
// runtime lets the others live on after a rank dies is the launcher's business
// (exp/mpi_runner.h: `mpirun --enable-recovery`).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "exp/dist_messages.h"
#include "exp/dist_scheduler.h"
#include "exp/executor.h"
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
  // With several workers:
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

// A plain run: the loop with one worker, `exec`, computing the cells in plan order.
RunSummary run_plan(const Plan& plan, Store& store, const CellExecutor& exec, const RunOptions& options = {});


// How many parts a cell is split into when `workers` compute.
int parts_for(const Cell& cell, int workers, const RunOptions& opt);

// The coordinator's side of the link to workers 0 .. workers()-1. Messages are parsed JSON (text
// that is not JSON arrives discarded); a link that crosses a process boundary serializes them.
class CoordinatorLink {
 public:
  virtual ~CoordinatorLink() = default;
  virtual int workers() const = 0;
  virtual std::string name(int worker) const = 0;  // "rank 2", for the log
  // The next message from any worker, waiting up to timeout_s seconds.
  virtual std::optional<std::pair<int, nlohmann::json>> receive(double timeout_s) = 0;
  virtual void send(int worker, const nlohmann::json& message) = 0;  // never blocks on a dead worker
};

// A worker's side of the link.
class WorkerLink {
 public:
  virtual ~WorkerLink() = default;
  virtual std::optional<std::string> receive(double timeout_s) = 0;
  virtual void send(const std::string& message) = 0;
};

// Runs the plan's unfinished cells on the link's workers until all are stored (or, without
// keep_going, one failed), then tells every live worker to stop ("finalize": no worker was lost).
// The log has a line per finished cell ("[ 3/12] CELL  ppl=185.7  1.2s"); with one worker that is
// all (cells in plan order, the progress bar on a terminal), with several also a line per unit
// started, per artifact made and per worker lost, and each cell's line says who computed it.
RunSummary coordinate(const Plan& plan, Store& store, CoordinatorLink& link, const RunOptions& opt);

// What a worker computes with. setup runs first (build the plan; return plan_digest or throw);
// run computes one unit and reports errors in its result. Both run on a thread of their own.
struct WorkerHooks {
  std::function<std::string()> setup;
  std::function<UnitResult(const WorkUnit&)> run;
};

struct ServeOutcome {
  bool stopped = false;          // told to stop (normal end)
  bool finalize = false;         // the coordinator saw no lost worker: MPI_Finalize is safe
  bool abandoned_unit = false;   // stopped while computing: the compute thread is still running
  std::string error;             // coordinator lost
};

// Serves units until told to stop (or the coordinator is lost).
ServeOutcome serve(WorkerLink& link, WorkerHooks hooks, const RunOptions& opt);

// The compute side of a worker: its plan (built here, or rank 0's), an Executor with its own
// caches, and the artifacts the coordinator told it about (new ones are reported back).
class WorkerContext {
 public:
  // Plans `config` with this executor's identities (the same files hash to the same keys).
  WorkerContext(const ExperimentConfig& config, std::string data_root, std::string results_dir, int threads);
  // Uses rank 0's plan, which must outlive this.
  WorkerContext(const Plan& plan, std::string data_root, std::string results_dir, int threads);
  ~WorkerContext();
  const Plan& plan() const { return own_plan_ ? *own_plan_ : *plan_; }
  UnitResult run(const WorkUnit& unit);

 private:
  class Artifacts;
  std::unique_ptr<Artifacts> artifacts_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<Plan> own_plan_;
  const Plan* plan_ = nullptr;
  int threads_ = 0;
};

// Links between a coordinator and workers living in this process (threads).
class LocalHub : public CoordinatorLink {
 public:
  explicit LocalHub(int workers);
  ~LocalHub() override;
  int workers() const override { return static_cast<int>(endpoints_.size()); }
  std::string name(int worker) const override { return "local worker " + std::to_string(worker); }
  std::optional<std::pair<int, nlohmann::json>> receive(double timeout_s) override;
  void send(int worker, const nlohmann::json& message) override;
  WorkerLink& worker(int i);
  // A cut link drops everything in both directions, as a killed process would (tests).
  void cut(int worker);

 private:
  class Endpoint;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<int, std::string>> inbox_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
};

}  // namespace ikv::exp
