// ikv-eval run: the main job (a YAML config → a resumable SQLite store → paper-style tables).
#include <filesystem>
#include <iostream>
#include <optional>

#include "exp/config.h"
#include "exp/estimate.h"
#include "exp/executor.h"
#include "exp/mpi_runner.h"
#include "exp/plan.h"
#include "exp/preflight.h"
#include "exp/report.h"
#include "exp/runner.h"
#include "exp/store.h"
#include "ikv-eval_commands.h"
#include "io/data_root.h"
#include "io/mapped_file.h"

namespace ikv::cli {
namespace {

struct RunArgs {
  std::string config, out;
  bool dry_run = false, keep_going = false;
  double mpi_timeout = 60, split_tokens = 1e6;
};

// Writes md/html/csv/json reports of a run next to the store, and returns the Markdown.
std::string write_reports(exp::Store& store, int64_t run_id, const std::string& out_dir) {
  const std::string stem = out_dir + "/report-run" + std::to_string(run_id);
  std::string markdown;
  for (auto [fmt, ext] : {std::pair{exp::ReportFormat::Markdown, ".md"}, {exp::ReportFormat::Html, ".html"},
                          {exp::ReportFormat::Csv, ".csv"}, {exp::ReportFormat::Json, ".json"}}) {
    const std::string text = exp::render_stored_report(store, run_id, fmt);
    io::write_file_atomic(stem + ext, text);
    if (fmt == exp::ReportFormat::Markdown) markdown = text;
  }
  return markdown;
}

int run_config(const Common& common, const RunArgs& a) {
  exp::ExperimentConfig cfg = exp::load_config(a.config);
  const std::string root =
      io::resolve_data_root(!common.data_root.empty() ? common.data_root : cfg.data_root);
  exp::check_paths_exist(cfg, root);
  const int threads = common.threads ? common.threads : cfg.threads;
  exp::set_threads(threads);
  const std::string out = !a.out.empty() ? a.out : (!cfg.results_dir.empty() ? cfg.results_dir : "results");
  exp::RunOptions opt;
  opt.keep_going = a.keep_going;
  opt.timeout = a.mpi_timeout;
  opt.split_tokens = a.split_tokens;
  // Under mpirun/srun with several ranks: rank 0 runs the plan below, the others only compute.
  const exp::MpiJob job = exp::join_mpi_job();
  if (job.rank > 0) {
    if (a.dry_run) {
      exp::leave_mpi_job(job, true);
      return 0;
    }
    return exp::serve_mpi(job, [&] { return std::make_unique<exp::WorkerContext>(cfg, root, out, threads); }, opt);
  }
  // Everything that can be checked is checked before the store is opened or created: a bad config
  // or input leaves no ikv.sqlite, run row or report behind.
  exp::Plan plan = exp::make_plan(cfg, exp::data_identities(root));
  if (plan.cells.empty())
    fail(a.config, ": nothing to run: the config expands to no cells (fp weights with kv_bits 16 run only intactkv: none)");
  exp::preflight(plan, root);
  const std::string db = exp::store_path(out);
  // An existing store marks finished cells, opened read-only and only when asked (a dry run never
  // creates or writes one; a run asks only about a cell that would not fit).
  std::optional<exp::Store> finished;
  const auto is_done = [&](const std::string& k) {
    if (!finished && std::filesystem::exists(db)) finished.emplace(db, exp::Store::Access::ReadOnly);
    return finished && finished->has_cell(k);
  };
  if (a.dry_run) {
    std::printf("%s", exp::render_plan(plan, exp::estimate_tokens, is_done, exp::plan_estimator(root, true)).c_str());
    exp::leave_mpi_job(job, true);
    return 0;
  }
  exp::refuse_oversized_cells(plan, exp::plan_estimator(root, false), is_done);
  finished.reset();
  exp::Store store(db);
  exp::Executor executor(root, out, store);
  // One run loop (exp/runner.h): alone, its one worker is this executor; under MPI, a worker
  // thread of this rank and every other rank.
  const exp::RunSummary s =
      job.distributed()
          ? exp::run_plan_mpi(job, plan, store,
                              [&] { return std::make_unique<exp::WorkerContext>(plan, root, out, threads); }, opt)
          : exp::run_plan(plan, store, [&](const exp::Cell& c) { return executor.run(c); }, opt);
  std::printf("%s", write_reports(store, s.run_id, out).c_str());
  std::fprintf(stderr, "run %lld: %zu cells, %zu reused, %zu computed, %zu failed in %.1f s; reports in %s/\n",
               (long long)s.run_id, s.total, s.reused, s.executed, s.failed, s.seconds, out.c_str());
  std::fflush(nullptr);
  exp::leave_mpi_job(job, s.clean());
  if (!s.ok()) {
    for (const auto& e : s.errors) std::fprintf(stderr, "%s\n", e.c_str());
    return 2;
  }
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, Common& common, int& exit_code) {
  static RunArgs r;
  CLI::App* run = app.add_subcommand("run", "run a YAML experiment config (resumable; results in a SQLite store)");
  add_common(run, common);
  run->add_option("config", r.config, "config.yaml")->required();
  run->add_option("--out", r.out, "results folder (store, artifacts, reports); default: config's or results/");
  run->add_flag("--dry-run", r.dry_run, "print the plan and its cost, run nothing");
  run->add_flag("--keep-going", r.keep_going, "go on after a failed cell");
  run->add_option("--mpi-timeout", r.mpi_timeout,
                  "under mpirun/srun: seconds of silence after which a rank is lost and its work re-queued")
      ->check(CLI::PositiveNumber);
  run->add_option("--split-tokens", r.split_tokens,
                  "under mpirun/srun: split PPL/QA/MMLU cells estimated above this many tokens over ranks")
      ->check(CLI::NonNegativeNumber);
  run->callback([&] { exit_code = run_config(common, r); });
}

}  // namespace ikv::cli
