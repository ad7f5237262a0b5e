#include "exp/runner.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <set>
#include <thread>

#include "exp/dist_scheduler.h"
#include "exp/model_setup.h"
#include "ikv_version.h"
#include "io/error.h"

namespace fs = std::filesystem;

namespace ikv::exp {
using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
std::chrono::microseconds micros(double seconds) {
  return std::chrono::microseconds(static_cast<int64_t>(std::max(0.0, seconds) * 1e6));
}

json stop_message(bool finalize) { return {{"type", "stop"}, {"finalize", finalize}}; }

std::string duration_text(double s) {
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, int(s) % 3600 / 60);
  return buf;
}

// "[ 3/12] testbed-26M rtn-w3g128 kv16 bos wikitext2", the head of a cell's log line.
std::string cell_head(const Cell& cell, size_t total) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "[%*zu/%zu] ", static_cast<int>(std::to_string(total).size()), cell.index + 1, total);
  return buf + cell.describe();
}

std::string unit_label(const Plan& plan, const WorkUnit& u) {
  std::string s = cell_head(plan.cells[u.cell], plan.cells.size());
  if (u.parts > 1) s += "  part " + std::to_string(u.part + 1) + "/" + std::to_string(u.parts);
  return s;
}

// "  ppl=185.7  1.2s": the first metric and the compute time.
std::string result_text(const CellRecord& r, double seconds) {
  char buf[128];
  int n = 0;
  if (!r.metrics.empty())
    n = std::snprintf(buf, sizeof buf, "  %s=%.4g", r.metrics[0].name.c_str(), r.metrics[0].value);
  std::snprintf(buf + n, sizeof buf - n, "  %.1fs", seconds);
  return buf;
}

// The terminal progress line, redrawn in place below the per-cell lines: `cost_done` of the
// estimated cost still to run at the start is finished, taking `busy` seconds so far.
struct ProgressBar {
  std::ostream& out;
  bool enabled;
  double total_cost, cost_done = 0, busy = 0;

  void clear() {
    if (enabled) out << "\r\033[K" << std::flush;
  }
  void draw(size_t done, size_t total, const std::string& running) {
    if (!enabled) return;
    const double fraction = total_cost > 0 ? cost_done / total_cost : double(done) / std::max<size_t>(total, 1);
    std::string bar(static_cast<int>(fraction * 30), '=');
    bar.resize(30, ' ');
    out << "\r\033[K[" << bar << "] " << done << "/" << total << "  ETA "
        << (cost_done > 0 ? duration_text(busy / cost_done * (total_cost - cost_done)) : "?") << "  " << running
        << std::flush;
  }
};

// The labels of a cell as stored (key, model, quant, kv_bits, intactkv, task_kind, task).
CellRecord cell_labels(const Cell& cell) {
  CellRecord r;
  r.key = cell.key;
  r.model = cell.model.name;
  r.quant = cell.quant_label();
  r.kv_bits = cell.kv_bits;
  r.intactkv = cell.intactkv.short_label();
  r.task_kind = task_kind(cell.task);
  r.task = task_label(cell.task);
  return r;
}

// Opens a run of the plan in the store (its run row and cells, the "resuming" line); fills
// summary's run_id, total and reused, and returns the indices of the cells still to compute.
std::vector<size_t> start_run(const Plan& plan, Store& store, RunSummary& summary, std::ostream& log) {
  summary.total = plan.cells.size();
  summary.run_id = store.begin_run(plan.config.file, plan.config.sha256, kEngineVersion);
  // Provenance the cells do not carry: the build, the threads, each model's dtype and every
  // identity (model fingerprints, data checksums) the cell keys were made of.
  store.set_run_option(summary.run_id, "build", IKV_BUILD_VERSION);
  store.set_run_option(summary.run_id, "threads", std::to_string(omp_get_max_threads()));
  for (const ModelSpec& m : plan.config.models) store.set_run_option(summary.run_id, "dtype:" + m.name, m.dtype);
  for (const auto& [name, id] : plan.identities) store.set_run_option(summary.run_id, name, id);
  if (plan.config.tasks.qa) {  // what the table's Avg averages ("" = the paper's tasks)
    std::string names;
    for (const auto& t : plan.config.tasks.qa->average) names += (names.empty() ? "" : ",") + t;
    store.set_run_option(summary.run_id, "qa_average", names);
  }
  if (plan.config.ci_baseline != "none") store.set_run_option(summary.run_id, "ci_baseline", plan.config.ci_baseline);
  std::vector<CellRecord> labels;
  std::vector<size_t> todo;
  for (const Cell& cell : plan.cells) {
    labels.push_back(cell_labels(cell));
    if (store.has_cell(cell.key))
      ++summary.reused;
    else
      todo.push_back(cell.index);
  }
  store.add_run_cells(summary.run_id, labels);
  if (summary.reused > 0)
    log << "resuming: " << summary.reused << " of " << summary.total << " cells already in " << store.path()
        << "\n";
  return todo;
}

// Commits a computed cell under the cell's labels, with `seconds` of compute.
void store_cell(Store& store, const Cell& cell, CellRecord record, double seconds) {
  // A NaN or Inf is no result: stored, it would be reported and compared as one.
  for (const Metric& m : record.metrics)
    if (!std::isfinite(m.value)) fail(cell.describe(), ": metric ", m.name, " is ", m.value, " (not stored)");
  const CellRecord l = cell_labels(cell);
  record.key = l.key;
  record.model = l.model, record.quant = l.quant, record.kv_bits = l.kv_bits;
  record.intactkv = l.intactkv, record.task_kind = l.task_kind, record.task = l.task;
  record.seconds = seconds;
  record.finished_at.clear();
  store.put_cell(record);
}

}  // namespace

int parts_for(const Cell& cell, int workers, const RunOptions& opt) {
  if (workers < 2 || !splittable(cell) || opt.split_tokens <= 0 || cell.est_cost <= opt.split_tokens) return 1;
  const double want = std::ceil(cell.est_cost / opt.split_tokens);
  return static_cast<int>(std::max(1.0, std::min({want, 2.0 * workers, static_cast<double>(opt.max_parts)})));
}

// ---------------------------------------------------------------------------------------------
// Coordinator

RunSummary coordinate(const Plan& plan, Store& store, CoordinatorLink& link, const RunOptions& opt) {
  const auto t0 = Clock::now();
  std::ostream& log = opt.log ? *opt.log : std::cerr;
  RunSummary summary;
  const std::vector<size_t> todo = start_run(plan, store, summary, log);
  const int n_workers = link.workers();
  // One worker is a plain run: cells in plan order, logged without the distribution's lines.
  const bool plain = n_workers == 1;

  std::vector<int> parts;
  size_t split = 0;
  double todo_cost = 0;
  for (size_t i : todo) {
    parts.push_back(parts_for(plan.cells[i], n_workers, opt));
    split += parts.back() > 1;
    todo_cost += plan.cells[i].est_cost;
  }
  std::vector<ArtifactRecord> known;  // artifacts already on disk
  std::set<std::string> asked;
  for (size_t i : todo)
    for (const std::string& k : {plan.cells[i].quant_key, plan.cells[i].intactkv_key})
      if (!k.empty() && asked.insert(k).second)
        if (auto a = store.get_artifact(k); a && fs::exists(a->path)) known.push_back(*a);
  Scheduler sched(plan, todo, parts, known);
  if (plain) sched.keep_plan_order();
  if (!plain) {
    log << "distributed run: " << n_workers << " workers, " << todo.size() << " cells to compute";
    if (split) log << " (" << split << " split into parts)";
    log << "\n";
  }
  const bool tty = opt.progress_bar == 1 || (opt.progress_bar == -1 && !opt.log && isatty(2));
  ProgressBar bar{log, plain && tty, todo_cost};

  enum class State { Starting, Busy, Waiting, Refused, Stopped, Lost };
  std::vector<State> state(n_workers, State::Starting);
  std::vector<Clock::time_point> heard(n_workers, Clock::now());
  const std::string digest = plan_digest(plan);

  auto finish = [&](const Scheduler::Finished& f, const std::string& who) {
    const Cell& cell = plan.cells[f.cell];
    const std::string head = cell_head(cell, summary.total);
    bool ok = f.ok;
    std::string error = f.error;
    if (ok) {
      try {
        store_cell(store, cell, f.record, f.seconds);
      } catch (const std::exception& e) {  // e.g. a non-finite metric
        ok = false;
        error = e.what();
      }
    }
    bar.clear();
    if (!ok) {
      ++summary.failed;
      summary.errors.push_back(head + ": " + error);
      log << head << "  FAILED: " << error << "\n";
      if (!opt.keep_going) {
        summary.stopped = true;
        sched.stop_new();
      }
      return;
    }
    ++summary.executed;
    bar.busy += f.seconds;
    bar.cost_done += cell.est_cost;
    log << head << result_text(f.record, f.seconds)
        << (f.parts > 1 ? "  (" + std::to_string(f.parts) + " parts)" : plain ? "" : "  " + who) << "\n";
  };

  // Answers worker w's request for work.
  auto answer = [&](int w) {
    if (sched.finished()) {
      link.send(w, stop_message(summary.clean()));
      state[w] = State::Stopped;
    } else if (state[w] == State::Refused) {
      link.send(w, {{"type", "wait"}});
    } else if (auto u = sched.assign(w)) {
      bar.draw(summary.reused + summary.executed + summary.failed, summary.total, plan.cells[u->cell].describe());
      link.send(w, to_json(*u));
      state[w] = State::Busy;
      if (!plain) log << unit_label(plan, *u) << "  started on " << link.name(w) << "\n";
    } else {
      link.send(w, {{"type", "wait"}});
      state[w] = State::Waiting;
    }
  };

  auto handle = [&](int w, const json& j) {
    const std::string type = j.at("type").get<std::string>();
    if (type == "heartbeat") return;
    if (type == "ready") {
      std::string why;
      if (j.contains("error"))
        why = j.at("error").get<std::string>();
      else if (j.at("plan").get<std::string>() != digest)
        why = "its plan differs from rank 0's (different config, model or data files)";
      if (!why.empty()) {
        log << link.name(w) << ": " << why << "; not used\n";
        state[w] = State::Refused;
      }
    } else if (type == "result") {
      const UnitResult r = unit_result_of(j);
      for (const ArtifactRecord& a : r.new_artifacts) {
        if (!sched.known().count(a.key)) store.put_artifact(a);
        log << "  " << a.kind << " artifact " << a.key.substr(0, 12) << " made by " << link.name(w) << "\n";
      }
      if (auto f = sched.complete(w, r)) finish(*f, link.name(w));
    } else if (type != "idle") {
      fail("unknown message type \"", type, "\"");
    }
    answer(w);
  };

  auto live = [&](int w) { return state[w] != State::Stopped && state[w] != State::Lost; };
  while (true) {
    if (std::none_of(state.begin(), state.end(), [](State s) { return s != State::Stopped && s != State::Lost; }))
      break;
    if (auto msg = link.receive(0.1)) {
      const auto& [w, body] = *msg;
      if (w < 0 || w >= n_workers || state[w] == State::Stopped) continue;
      if (state[w] == State::Lost) {  // given up on, yet alive: tell it to go
        link.send(w, stop_message(false));
        continue;
      }
      heard[w] = Clock::now();
      try {
        if (body.is_discarded()) fail("not JSON");
        handle(w, body);
      } catch (const std::exception& e) {
        log << link.name(w) << ": bad message (" << e.what() << "); not used\n";
        if (auto f = sched.lost(w)) finish(*f, link.name(w));
        state[w] = State::Refused;
      }
    }
    for (int w = 0; w < n_workers; ++w) {
      if (!live(w) || since(heard[w]) <= opt.timeout) continue;
      summary.lost.push_back(link.name(w));
      log << link.name(w) << ": no message for " << opt.timeout << " s: lost";
      if (const WorkUnit* u = sched.running(w)) log << "; re-queued " << unit_label(plan, *u);
      log << "\n";
      state[w] = State::Lost;
      if (auto f = sched.lost(w)) finish(*f, link.name(w));
    }
    // Nobody left who could compute: give up on what is left; refused workers get their stop.
    const bool can_compute = std::any_of(state.begin(), state.end(), [](State s) {
      return s == State::Starting || s == State::Busy || s == State::Waiting;
    });
    if (!can_compute && !sched.finished()) {
      for (size_t cell : sched.unfinished_cells()) {
        const std::string head = cell_head(plan.cells[cell], summary.total);
        ++summary.failed;
        summary.errors.push_back(head + ": no worker left to run it");
        log << head << "  FAILED: no worker left to run it\n";
      }
      summary.stopped = true;
      sched.stop_new();
    }
  }
  bar.clear();
  store.finish_run(summary.run_id);
  summary.seconds = since(t0);
  return summary;
}

// ---------------------------------------------------------------------------------------------
// A plain run

namespace {

// The worker of a plain run, as the coordinator's link: a unit handed out is computed by `exec` in
// the caller's thread when the coordinator next listens, and its result is the answer (so the
// coordinator never counts the computing time as silence).
class InProcessWorker : public CoordinatorLink {
 public:
  InProcessWorker(const Plan& plan, const CellExecutor& exec)
      : plan_(plan), exec_(exec), reply_(json{{"type", "ready"}, {"plan", plan_digest(plan)}}) {}
  int workers() const override { return 1; }
  std::string name(int) const override { return "this process"; }
  std::optional<std::pair<int, json>> receive(double) override {
    if (unit_) reply_ = to_json(compute(*std::exchange(unit_, std::nullopt)));
    if (!reply_) return std::nullopt;
    return std::pair{0, *std::exchange(reply_, std::nullopt)};
  }
  void send(int, const json& message) override {
    const std::string type = message.at("type").get<std::string>();
    if (type == "work") unit_ = work_unit_of(message);
    if (type == "wait") reply_ = json{{"type", "idle"}};
  }

 private:
  UnitResult compute(const WorkUnit& u) {
    const auto t0 = Clock::now();
    UnitResult r;
    r.cell = u.cell, r.key = u.key;
    try {
      r.record = exec_(plan_.cells[u.cell]);
      r.ok = true;
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    r.seconds = since(t0);
    return r;
  }

  const Plan& plan_;
  const CellExecutor& exec_;
  std::optional<WorkUnit> unit_;
  std::optional<json> reply_;
};

}  // namespace

RunSummary run_plan(const Plan& plan, Store& store, const CellExecutor& exec, const RunOptions& options) {
  InProcessWorker worker(plan, exec);
  return coordinate(plan, store, worker, options);
}

// ---------------------------------------------------------------------------------------------
// Worker

ServeOutcome serve(WorkerLink& link, WorkerHooks hooks, const RunOptions& opt) {
  const double beat = std::clamp(opt.timeout / 10, 0.01, 5.0);
  const double poll = std::min(0.05, beat / 2);
  ServeOutcome out;
  bool contacted = false;  // heard from the coordinator at least once

  auto on_stop = [&](const json& j) {
    out.stopped = true;
    out.finalize = j.value("finalize", false);
  };

  // Runs `fn` on a compute thread and returns the message it makes, sending heartbeats meanwhile;
  // nullopt when told to stop first (the thread is then left running, detached).
  auto compute = [&](std::function<std::string()> fn) -> std::optional<std::string> {
    struct Job {
      std::atomic<bool> done{false};
      std::string message;
    };
    auto job = std::make_shared<Job>();
    std::thread thread([job, fn = std::move(fn)] {
      job->message = fn();
      job->done = true;
    });
    auto last_beat = Clock::now();
    while (!job->done) {
      if (auto m = link.receive(poll)) {
        contacted = true;
        json j = json::parse(*m, nullptr, false);
        if (!j.is_discarded() && j.value("type", "") == "stop") {
          on_stop(j);
          out.abandoned_unit = true;
          thread.detach();
          return std::nullopt;
        }
      }
      if (since(last_beat) >= beat) {
        link.send(json{{"type", "heartbeat"}}.dump());
        last_beat = Clock::now();
      }
    }
    thread.join();
    return job->message;
  };

  std::optional<std::string> ready = compute([setup = hooks.setup] {
    try {
      return json{{"type", "ready"}, {"plan", setup()}}.dump();
    } catch (const std::exception& e) {
      return json{{"type", "ready"}, {"error", e.what()}}.dump();
    }
  });
  if (!ready) return out;
  link.send(*ready);
  auto asked = Clock::now();
  while (true) {
    std::optional<std::string> m = link.receive(poll);
    if (!m) {
      // Before the first answer the coordinator may still be planning (hashing large models).
      const double patience = contacted ? opt.timeout : 20 * opt.timeout;
      if (since(asked) > patience) {
        out.error = "no answer from the coordinator for " + std::to_string(static_cast<int>(patience)) + " s";
        return out;
      }
      continue;
    }
    contacted = true;
    const json j = json::parse(*m);
    const std::string type = j.at("type").get<std::string>();
    if (type == "stop") {
      on_stop(j);
      return out;
    }
    if (type == "wait") {
      std::this_thread::sleep_for(micros(std::min(0.25, beat)));
      link.send(json{{"type", "idle"}}.dump());
    } else if (type == "work") {
      const WorkUnit unit = work_unit_of(j);
      std::optional<std::string> result =
          compute([run = hooks.run, unit] { return to_json(run(unit)).dump(); });
      if (!result) return out;
      link.send(*result);
    }
    asked = Clock::now();
  }
}

// ---------------------------------------------------------------------------------------------
// WorkerContext

class WorkerContext::Artifacts : public ArtifactIndex {
 public:
  std::optional<ArtifactRecord> get_artifact(const std::string& key) override {
    auto it = known_.find(key);
    return it == known_.end() ? std::nullopt : std::optional(it->second);
  }
  void put_artifact(const ArtifactRecord& a) override {
    ArtifactRecord r = a;
    if (r.created_at.empty()) r.created_at = utc_now();
    known_[r.key] = r;
    made_.push_back(r);
  }
  void learn(const std::vector<ArtifactRecord>& v) {
    for (const ArtifactRecord& a : v) known_[a.key] = a;
  }
  std::vector<ArtifactRecord> take_made() { return std::exchange(made_, {}); }

 private:
  std::map<std::string, ArtifactRecord> known_;
  std::vector<ArtifactRecord> made_;
};

WorkerContext::WorkerContext(const ExperimentConfig& config, std::string data_root, std::string results_dir,
                             int threads)
    : artifacts_(std::make_unique<Artifacts>()),
      executor_(std::make_unique<Executor>(data_root, std::move(results_dir), *artifacts_)),
      threads_(threads) {
  own_plan_ = std::make_unique<Plan>(make_plan(config, data_identities(data_root)));
}

WorkerContext::WorkerContext(const Plan& plan, std::string data_root, std::string results_dir, int threads)
    : artifacts_(std::make_unique<Artifacts>()),
      executor_(std::make_unique<Executor>(std::move(data_root), std::move(results_dir), *artifacts_)),
      plan_(&plan),
      threads_(threads) {}

WorkerContext::~WorkerContext() = default;

UnitResult WorkerContext::run(const WorkUnit& u) {
  const auto t0 = Clock::now();
  UnitResult r;
  r.cell = u.cell, r.key = u.key, r.part = u.part, r.parts = u.parts;
  const Plan& p = plan();
  if (u.cell >= p.cells.size() || p.cells[u.cell].key != u.key) {
    r.error = "this worker's plan has no cell " + u.key.substr(0, 12) + " at position " + std::to_string(u.cell + 1);
    return r;
  }
  artifacts_->learn(u.artifacts);
  try {
    set_threads(threads_);  // OpenMP's thread count is per thread: this one's too
    if (u.parts > 1)
      r.part_result = executor_->run_part(p.cells[u.cell], u.part, u.parts);
    else
      r.record = executor_->run(p.cells[u.cell]);
    r.ok = true;
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  r.new_artifacts = artifacts_->take_made();
  r.seconds = since(t0);
  return r;
}

// ---------------------------------------------------------------------------------------------
// LocalHub

class LocalHub::Endpoint : public WorkerLink {
 public:
  Endpoint(LocalHub& hub, int id) : hub_(hub), id_(id) {}
  std::optional<std::string> receive(double timeout_s) override {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, micros(timeout_s), [&] { return !inbox_.empty(); });
    if (inbox_.empty()) return std::nullopt;
    std::string m = std::move(inbox_.front());
    inbox_.pop_front();
    return m;
  }
  void send(const std::string& message) override {
    if (cut_) return;
    {
      std::lock_guard lock(hub_.mu_);
      hub_.inbox_.emplace_back(id_, message);
    }
    hub_.cv_.notify_one();
  }
  void deliver(const std::string& message) {
    if (cut_) return;
    {
      std::lock_guard lock(mu_);
      inbox_.push_back(message);
    }
    cv_.notify_one();
  }
  void cut() {
    cut_ = true;
    std::lock_guard lock(mu_);
    inbox_.clear();
  }

 private:
  LocalHub& hub_;
  int id_;
  std::atomic<bool> cut_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> inbox_;
};

LocalHub::LocalHub(int workers) {
  for (int i = 0; i < workers; ++i) endpoints_.push_back(std::make_unique<Endpoint>(*this, i));
}

std::optional<std::pair<int, json>> LocalHub::receive(double timeout_s) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, micros(timeout_s), [&] { return !inbox_.empty(); });
  if (inbox_.empty()) return std::nullopt;
  auto [w, m] = std::move(inbox_.front());
  inbox_.pop_front();
  return std::pair{w, json::parse(m, nullptr, false)};
}

void LocalHub::send(int worker, const json& message) { endpoints_.at(worker)->deliver(message.dump()); }

LocalHub::~LocalHub() = default;

WorkerLink& LocalHub::worker(int i) { return *endpoints_.at(i); }

void LocalHub::cut(int worker) { endpoints_.at(worker)->cut(); }

}  // namespace ikv::exp
