#include "exp/runner.h"

#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "ikv_version.h"
#include "io/error.h"
#include "io/sha256.h"

namespace ikv::exp {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

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

// "[ 3/12]"
std::string counter(size_t index, size_t total) {
  const int width = static_cast<int>(std::to_string(total).size());
  char buf[64];
  std::snprintf(buf, sizeof buf, "[%*zu/%zu]", width, index + 1, total);
  return buf;
}

// The terminal progress line, redrawn in place below the per-cell lines.
class ProgressBar {
 public:
  ProgressBar(std::ostream& out, bool enabled, double total_cost)
      : out_(out), enabled_(enabled), total_cost_(total_cost) {}

  void clear() {
    if (enabled_) out_ << "\r\033[K" << std::flush;
  }
  // `cost_done` of the cost still to run at start is finished, taking `busy` seconds so far.
  void draw(size_t done, size_t total, double cost_done, double busy, const std::string& running) {
    if (!enabled_) return;
    constexpr int kWidth = 30;
    const double fraction =
        total_cost_ > 0 ? cost_done / total_cost_ : double(done) / std::max<size_t>(total, 1);
    const int filled = static_cast<int>(fraction * kWidth);
    std::string bar(filled, '=');
    bar.resize(kWidth, ' ');
    std::string eta =
        cost_done > 0 ? "ETA " + duration_text(busy / cost_done * (total_cost_ - cost_done)) : "ETA ?";
    out_ << "\r\033[K[" << bar << "] " << done << "/" << total << "  " << eta << "  " << running
         << std::flush;
  }

 private:
  std::ostream& out_;
  bool enabled_;
  double total_cost_;
};

}  // namespace

CellRecord cell_labels(const Cell& cell) {
  CellRecord r;
  r.key = cell.key;
  r.model = cell.model.name;
  r.quant = cell.quant.short_label();
  r.kv_bits = cell.kv_bits;
  r.intactkv = cell.intactkv.short_label();
  r.task_kind = task_kind(cell.task);
  r.task = task_label(cell.task);
  return r;
}


std::string first_metric(const CellRecord& r) {
  if (r.metrics.empty()) return "";
  char buf[96];
  std::snprintf(buf, sizeof buf, "  %s=%.4g", r.metrics[0].name.c_str(), r.metrics[0].value);
  return buf;
}

std::string cell_head(const Cell& cell, size_t total) { return counter(cell.index, total) + " " + cell.describe(); }

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

RunSummary run_plan(const Plan& plan, Store& store, const CellExecutor& exec, const RunOptions& options) {
  const auto t0 = Clock::now();
  std::ostream& log = options.log ? *options.log : std::cerr;
  const bool tty = options.progress_bar == 1 || (options.progress_bar == -1 && !options.log && isatty(2));

  RunSummary summary;
  std::vector<const Cell*> todo;
  double todo_cost = 0;
  for (size_t i : start_run(plan, store, summary, log)) {
    todo.push_back(&plan.cells[i]);
    todo_cost += plan.cells[i].est_cost;
  }

  ProgressBar bar(log, tty, todo_cost);
  double cost_done = 0, busy = 0;
  for (size_t i = 0; i < todo.size(); ++i) {
    const Cell& cell = *todo[i];
    const std::string head = cell_head(cell, summary.total);
    bar.draw(summary.reused + i, summary.total, cost_done, busy, cell.describe());
    const auto start = Clock::now();
    CellRecord record;
    double seconds = 0;
    try {
      record = exec(cell);
      seconds = since(start);
      store_cell(store, cell, record, seconds);
    } catch (const std::exception& e) {
      bar.clear();
      ++summary.failed;
      summary.errors.push_back(head + ": " + e.what());
      log << head << "  FAILED: " << e.what() << "\n";
      if (!options.keep_going) {
        summary.stopped = true;
        break;
      }
      continue;
    }
    ++summary.executed;
    busy += seconds;
    cost_done += cell.est_cost;
    bar.clear();
    char secs[32];
    std::snprintf(secs, sizeof secs, "  %.1fs", seconds);
    log << head << first_metric(record) << secs << "\n";
  }
  bar.clear();
  store.finish_run(summary.run_id);
  summary.seconds = since(t0);
  return summary;
}

}  // namespace ikv::exp
