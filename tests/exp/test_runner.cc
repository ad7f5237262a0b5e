#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "exp/exp_fixtures.h"
#include "exp/runner.h"
#include "io/error.h"

using namespace ikv::exp;
using namespace ikv::exp::testing;

namespace {

// 44 cells: 1 model x {fp, rtn w3, rtn w4} x kv {16, 8} x {none, bos} x 4 QA tasks, where fp/kv16
// runs "none" only: 4 + 5 x 8.
const char* kFortyFour = R"(
models: [{name: tiny, path: models/tiny}]
quantizers: [fp, {method: rtn, wbits: 3, group: 128}, {method: rtn, wbits: 4, group: 128}]
kv_bits: [16, 8]
intactkv: [none, bos]
tasks: {qa: {tasks: [arc_easy, boolq, piqa, winogrande], limit: 10}}
)";

RunOptions quiet(std::ostream& sink) {
  RunOptions o;
  o.log = &sink;
  o.progress_bar = 0;
  return o;
}

}  // namespace

TEST_CASE("runner: runs every cell, logs one line each, stores them") {
  TempDir dir;
  Store store(dir / "ikv.sqlite");
  const Plan plan = small_plan();
  std::ostringstream log;
  const RunSummary s = run_plan(
      plan, store,
      [](const Cell& c) {
        CellRecord r;
        r.metrics.push_back({task_kind(c.task) == "ppl" ? "ppl" : "acc", 23.41, 0, 1});
        return r;
      },
      quiet(log));
  CHECK(s.ok());
  CHECK(s.total == 12);
  CHECK(s.executed == 12);
  CHECK(s.reused == 0);
  CHECK(!s.stopped);

  std::vector<std::string> lines;
  std::istringstream in(log.str());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 12);
  CHECK(lines[0].starts_with("[ 1/12] tiny fp kv16 none wikitext2  ppl=23.41  "));
  CHECK(lines[8].starts_with("[ 9/12] tiny rtn-w3g128 kv16 bos wikitext2  ppl=23.41  "));
  CHECK(lines[11].starts_with("[12/12] tiny rtn-w3g128 kv16 bos boolq  acc=23.41  "));
  CHECK(lines[11].ends_with("s"));

  const auto run = store.latest_run();
  REQUIRE(run);
  CHECK(run->id == s.run_id);
  CHECK(run->config_path == "small.yaml");
  CHECK(run->config_sha256 == plan.config.sha256);
  CHECK(!run->finished_at.empty());
  const auto cells = store.cells_of_run(s.run_id);
  REQUIRE(cells.size() == 12);
  CHECK(cells[8].key == plan.cells[8].key);
  CHECK(cells[8].intactkv == "bos");
  CHECK(cells[8].task_kind == "ppl");
  CHECK(cells[8].seconds >= 0);
}

TEST_CASE("runner: cells run in plan order, whatever artifacts the coordinator knows") {
  // After the fp kv8 bos cells, the bos prefix would draw the scheduler's rtn bos cells forward.
  TempDir dir;
  Store store(dir / "ikv.sqlite");
  const Plan plan = make_plan(parse_config(kFortyFour, "forty-four.yaml"), fake_identities());
  std::vector<size_t> order;
  std::ostringstream log;
  run_plan(plan, store, [&](const Cell& c) { return order.push_back(c.index), fake_result(c); }, quiet(log));
  REQUIRE(order.size() == plan.cells.size());
  for (size_t i = 0; i < order.size(); ++i) CHECK(order[i] == i);
}

TEST_CASE("runner: a second run reuses everything, quickly") {
  TempDir dir;
  Store store(dir / "ikv.sqlite");
  std::string yaml = kFortyFour;
  yaml.replace(yaml.find("[16, 8]"), 7, "[16, 8, 7, 6, 5, 4, 3, 2]");  // 4 + 23 x 8 = 188 cells
  const Plan plan = make_plan(parse_config(yaml, "big.yaml"), fake_identities());
  REQUIRE(plan.cells.size() == 188);
  std::ostringstream log;
  CHECK(run_plan(plan, store, fake_result, quiet(log)).executed == plan.cells.size());

  int calls = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const RunSummary again = run_plan(
      plan, store, [&](const Cell& c) { return ++calls, fake_result(c); }, quiet(log));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(calls == 0);
  CHECK(again.executed == 0);
  CHECK(again.reused == plan.cells.size());
  CHECK(seconds < 0.5);
  CHECK(store.cells_of_run(again.run_id).size() == plan.cells.size());
}

TEST_CASE("runner: a failing cell stores nothing and stops, or is skipped with keep_going") {
  const Plan plan = small_plan();
  auto failing = [&](const Cell& c) {
    if (c.index == 2) ikv::fail("arc_easy.jsonl: broken line 7");
    return fake_result(c);
  };
  {
    TempDir dir;
    Store store(dir / "ikv.sqlite");
    std::ostringstream log;
    const RunSummary s = run_plan(plan, store, failing, quiet(log));
    CHECK(!s.ok());
    CHECK(s.stopped);
    CHECK(s.executed == 2);
    CHECK(s.failed == 1);
    REQUIRE(s.errors.size() == 1);
    CHECK(s.errors[0] == "[ 3/12] tiny fp kv16 none arc_easy: arc_easy.jsonl: broken line 7");
    CHECK(log.str().find("[ 3/12] tiny fp kv16 none arc_easy  FAILED: arc_easy.jsonl: broken line 7\n") !=
          std::string::npos);
    CHECK(!store.has_cell(plan.cells[2].key));
    CHECK(!store.has_cell(plan.cells[3].key));
  }
  {
    TempDir dir;
    Store store(dir / "ikv.sqlite");
    std::ostringstream log;
    RunOptions o = quiet(log);
    o.keep_going = true;
    const RunSummary s = run_plan(plan, store, failing, o);
    CHECK(!s.stopped);
    CHECK(s.executed == 11);
    CHECK(s.failed == 1);
    CHECK(!store.has_cell(plan.cells[2].key));
    CHECK(store.has_cell(plan.cells[11].key));
  }
}

TEST_CASE("runner: progress bar draws in place when asked") {
  TempDir dir;
  Store store(dir / "ikv.sqlite");
  std::ostringstream log;
  RunOptions o = quiet(log);
  o.progress_bar = 1;
  run_plan(small_plan(), store, fake_result, o);
  CHECK(log.str().find("\r\033[K[") != std::string::npos);
  CHECK(log.str().find("ETA") != std::string::npos);
}

TEST_CASE("runner: kill -9 mid-run leaves only whole cells; resume matches a clean run bit for bit") {
  TempDir dir;
  const std::string db = dir / "killed.sqlite";
  const Plan plan = make_plan(parse_config(kFortyFour, "forty-four.yaml"), fake_identities());
  REQUIRE(plan.cells.size() == 44);

  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // the victim: ~50 ms per cell, about 2 s for the whole plan
    try {
      Store store(db);
      std::ostringstream sink;
      run_plan(
          plan, store,
          [](const Cell& c) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            return fake_result(c);
          },
          quiet(sink));
    } catch (...) {
    }
    _exit(0);
  }
  // Wait for a handful of committed cells, then kill without warning.
  size_t before_kill = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!std::filesystem::exists(db)) continue;
    Store watcher(db);
    before_kill = 0;
    for (const Cell& c : plan.cells) before_kill += watcher.has_cell(c.key);
    if (before_kill >= 8) break;
  }
  REQUIRE(kill(child, SIGKILL) == 0);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));

  Store store(db);
  CHECK(store.integrity_check() == "ok");
  std::set<std::string> done;
  for (const Cell& c : plan.cells) {
    const auto rec = store.get_cell(c.key);
    if (!rec) continue;
    done.insert(c.key);
    CHECK(rec->metrics.size() == 2);  // whole: every metric and the outcomes
    REQUIRE(rec->outcomes.size() == 1);
    CHECK(rec->outcomes[0].values.size() == 50);
  }
  CHECK(done.size() >= 8);
  CHECK(done.size() < plan.cells.size());
  const auto killed_run = store.latest_run();
  REQUIRE(killed_run);
  CHECK(killed_run->finished_at.empty());

  // Resume in-process: only the missing cells run.
  std::set<std::string> executed;
  std::ostringstream log;
  const RunSummary resumed = run_plan(
      plan, store,
      [&](const Cell& c) {
        executed.insert(c.key);
        return fake_result(c);
      },
      quiet(log));
  CHECK(resumed.ok());
  CHECK(resumed.reused == done.size());
  CHECK(resumed.executed == plan.cells.size() - done.size());
  CHECK(executed.size() == plan.cells.size() - done.size());
  for (const auto& key : executed) CHECK(done.count(key) == 0);
  CHECK(log.str().starts_with("resuming: " + std::to_string(done.size()) + " of 44 cells already in " + db +
                              "\n"));

  Store clean(dir / "clean.sqlite");
  std::ostringstream clean_log;
  run_plan(plan, clean, fake_result, quiet(clean_log));
  check_same_cells(store, clean, plan);
  CHECK(store.cells_of_run(resumed.run_id).size() == 44);
}

TEST_CASE("runner: kill -9 while commits are in flight leaves a consistent store") {
  // No sleeping: big outcome blobs make committing (with fsync) most of the child's time, so
  // the kill likely lands inside a transaction.
  TempDir dir;
  const std::string db = dir / "busy.sqlite";
  const Plan plan = make_plan(parse_config(kFortyFour, "forty-four.yaml"), fake_identities());
  constexpr size_t kItems = 200000;
  auto heavy = [](const Cell& c) {
    CellRecord r = fake_result(c);
    r.outcomes[0].values.resize(kItems, 0.5);
    return r;
  };
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    try {
      Store store(db);
      std::ostringstream sink;
      run_plan(plan, store, heavy, quiet(sink));
    } catch (...) {
    }
    _exit(0);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!std::filesystem::exists(db)) continue;
    Store watcher(db);
    if (watcher.has_cell(plan.cells[2].key)) break;
  }
  kill(child, SIGKILL);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);

  Store store(db);
  CHECK(store.integrity_check() == "ok");
  size_t done = 0;
  for (const Cell& c : plan.cells) {
    const auto rec = store.get_cell(c.key);
    if (!rec) continue;
    ++done;
    CHECK(rec->metrics.size() == 2);
    REQUIRE(rec->outcomes.size() == 1);
    CHECK(rec->outcomes[0].values == heavy(c).outcomes[0].values);
  }
  CHECK(done >= 3);
  std::ostringstream log;
  const RunSummary resumed = run_plan(plan, store, heavy, quiet(log));
  CHECK(resumed.reused == done);
  CHECK(resumed.reused + resumed.executed == plan.cells.size());
}
