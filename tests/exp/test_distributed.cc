// The distributed runner without MPI: message round trips, exact merging of split cells, the
// scheduler's artifact rules, and coordinator + workers as threads over a LocalHub (one of them
// "killed" mid-unit) against the single-process runner, bit for bit.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <sstream>
#include <thread>

#include "exp/dist_messages.h"
#include "exp/dist_scheduler.h"
#include "exp/exp_fixtures.h"
#include "exp/runner.h"
#include "io/error.h"

using namespace ikv::exp;
using namespace ikv::exp::testing;

namespace {

// Per-item values that are a pure function of (cell key, item): window NLLs of very different
// magnitudes, so that summing them in another order would change the last bits.
double item_value(const Cell& cell, int64_t item) {
  std::seed_seq seq(cell.key.begin(), cell.key.end());
  std::mt19937_64 rng(seq);
  rng.discard(static_cast<unsigned long long>(item));
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
  return task_kind(cell.task) == "ppl" ? std::ldexp(u, static_cast<int>(item % 40) - 20) : (u < 0.5 ? 0.0 : 1.0);
}

constexpr int64_t kItems = 11;

// What run_part would compute, without a model.
CellPart fake_part(const Cell& cell, int part, int parts) {
  CellPart p;
  p.part = part, p.parts = parts, p.items = kItems;
  std::tie(p.begin, p.end) = part_range(kItems, part, parts);
  ItemOutcomes v{task_kind(cell.task) == "ppl" ? "window_nll" : "acc", {}};
  for (int64_t i = p.begin; i < p.end; ++i) v.values.push_back(item_value(cell, i));
  p.values.push_back(v);
  if (task_kind(cell.task) == "ppl") {
    p.tokens_scored = 62 * (p.end - p.begin);
  } else {
    ItemOutcomes n{"acc_norm", {}};
    for (int64_t i = p.begin; i < p.end; ++i) n.values.push_back(1.0 - item_value(cell, i));
    p.values.push_back(n);
  }
  return p;
}

CellRecord fake_whole(const Cell& cell) { return merge_parts(cell, {fake_part(cell, 0, 1)}); }

UnitResult fake_unit(const Plan& plan, const WorkUnit& u) {
  UnitResult r;
  r.cell = u.cell, r.key = u.key, r.part = u.part, r.parts = u.parts, r.ok = true;
  const Cell& cell = plan.cells[u.cell];
  if (u.parts > 1)
    r.part_result = fake_part(cell, u.part, u.parts);
  else
    r.record = fake_whole(cell);
  // The worker that makes an artifact reports it (as the Executor does through ArtifactIndex).
  for (const std::string& k : {cell.quant_key, cell.intactkv_key}) {
    if (k.empty()) continue;
    bool known = false;
    for (const auto& a : u.artifacts) known |= a.key == k;
    if (!known) r.new_artifacts.push_back({k, "fake", "/nonexistent/" + k, "sha", "2024-01-01T00:00:00Z"});
  }
  return r;
}

const Cell& first_cell_of_kind(const Plan& plan, const std::string& kind) {
  for (const Cell& c : plan.cells)
    if (task_kind(c.task) == kind) return c;
  FAIL("no ", kind, " cell");
  throw;
}

}  // namespace

TEST_CASE("messages: doubles travel bit for bit, NaN and infinities included") {
  const std::vector<double> v = {0.0, -0.0, 1.0 / 3, std::nan(""), -std::numeric_limits<double>::infinity(),
                                 std::numeric_limits<double>::denorm_min(), 185.67};
  const std::vector<double> back = doubles_of_hex(hex_of_doubles(v));
  REQUIRE(back.size() == v.size());
  for (size_t i = 0; i < v.size(); ++i) CHECK(same_bits(v[i], back[i]));
  CHECK(doubles_of_hex("").empty());
  CHECK_THROWS_AS(doubles_of_hex("123"), ikv::Error);
  CHECK_THROWS_AS(doubles_of_hex("zzzzzzzzzzzzzzzz"), ikv::Error);
}

TEST_CASE("messages: work units and results round-trip through JSON") {
  WorkUnit u;
  u.cell = 7, u.key = "abc", u.part = 2, u.parts = 5, u.attempt = 2;
  u.artifacts.push_back({"k1", "quant", "results/artifacts/k1.quant.safetensors", "ff00", "2024-05-01T10:00:00Z"});
  const WorkUnit u2 = work_unit_of(nlohmann::json::parse(to_json(u).dump()));
  CHECK(u2.cell == 7);
  CHECK(u2.key == "abc");
  CHECK(u2.part == 2);
  CHECK(u2.parts == 5);
  CHECK(u2.attempt == 2);
  REQUIRE(u2.artifacts.size() == 1);
  CHECK(u2.artifacts[0].path == u.artifacts[0].path);
  CHECK(u2.artifacts[0].created_at == u.artifacts[0].created_at);

  UnitResult whole;
  whole.cell = 3, whole.key = "k", whole.ok = true, whole.seconds = 1.25;
  whole.record.metrics.push_back({"ppl", 185.671234567891, std::nan(""), 1020});
  whole.record.outcomes.push_back({"window_nll", {1.5, 2.25, 1e-300}});
  const UnitResult w2 = unit_result_of(nlohmann::json::parse(to_json(whole).dump()));
  CHECK(w2.ok);
  REQUIRE(w2.record.metrics.size() == 1);
  CHECK(same_bits(w2.record.metrics[0].value, 185.671234567891));
  CHECK(std::isnan(w2.record.metrics[0].std_err));
  CHECK(w2.record.metrics[0].n == 1020);
  CHECK(w2.record.outcomes == whole.record.outcomes);
  CHECK(w2.seconds == 1.25);

  UnitResult part;
  part.cell = 4, part.key = "q", part.part = 1, part.parts = 3, part.ok = true;
  part.part_result.part = 1, part.part_result.parts = 3, part.part_result.items = 9;
  part.part_result.begin = 3, part.part_result.end = 6, part.part_result.tokens_scored = 77;
  part.part_result.values.push_back({"acc", {1, 0, 1}});
  part.part_result.subjects = {"anatomy", "anatomy", "astronomy"};
  part.part_result.extra.push_back({"calibration_loss", {0.5, 0.25}});
  const UnitResult p2 = unit_result_of(nlohmann::json::parse(to_json(part).dump()));
  CHECK(p2.part_result.begin == 3);
  CHECK(p2.part_result.end == 6);
  CHECK(p2.part_result.tokens_scored == 77);
  CHECK(p2.part_result.values == part.part_result.values);
  CHECK(p2.part_result.subjects == part.part_result.subjects);
  CHECK(p2.part_result.extra == part.part_result.extra);

  UnitResult failed;
  failed.error = "model.safetensors: missing";
  const UnitResult f2 = unit_result_of(nlohmann::json::parse(to_json(failed).dump()));
  CHECK(!f2.ok);
  CHECK(f2.error == failed.error);
  CHECK_THROWS_AS(unit_result_of(nlohmann::json::parse(R"({"cell": 1})")), ikv::Error);
}

TEST_CASE("parts: ranges tile the items; any split merges to the whole cell's bits") {
  for (int64_t items : {1, 2, 7, 40})
    for (int parts = 1; parts <= 9; ++parts) {
      int64_t next = 0;
      for (int p = 0; p < parts; ++p) {
        auto [b, e] = part_range(items, p, parts);
        CHECK(b == next);
        CHECK(e >= b);
        next = e;
      }
      CHECK(next == items);
    }
  CHECK_THROWS_AS(part_range(10, 3, 3), ikv::Error);

  const Plan plan = small_plan();
  for (const char* kind : {"ppl", "qa"}) {
    CAPTURE(kind);
    const Cell& cell = first_cell_of_kind(plan, kind);
    CHECK(splittable(cell));
    const CellRecord whole = fake_whole(cell);
    REQUIRE(!whole.metrics.empty());
    for (int parts = 2; parts <= 13; ++parts) {  // 12 and 13 parts leave some parts empty
      CAPTURE(parts);
      std::vector<CellPart> ps;
      for (int p = 0; p < parts; ++p) ps.push_back(fake_part(cell, p, parts));
      const CellRecord merged = merge_parts(cell, ps);
      REQUIRE(merged.metrics.size() == whole.metrics.size());
      for (size_t i = 0; i < whole.metrics.size(); ++i) {
        CHECK(merged.metrics[i].name == whole.metrics[i].name);
        CHECK(same_bits(merged.metrics[i].value, whole.metrics[i].value));
        CHECK(same_bits(merged.metrics[i].std_err, whole.metrics[i].std_err));
      }
      CHECK(merged.outcomes == whole.outcomes);
    }
  }
  // The PPL is exp(sum of window NLLs in window order / tokens), not an average of averages.
  const Cell& ppl = first_cell_of_kind(plan, "ppl");
  double nll = 0;
  for (int64_t i = 0; i < kItems; ++i) nll += item_value(ppl, i);
  CHECK(same_bits(fake_whole(ppl).metrics[0].value, std::exp(nll / (62.0 * kItems))));
}

TEST_CASE("parts: merging refuses gaps, overlaps and missing parts") {
  const Plan plan = small_plan();
  const Cell& cell = first_cell_of_kind(plan, "ppl");
  std::vector<CellPart> ps = {fake_part(cell, 0, 3), fake_part(cell, 1, 3), fake_part(cell, 2, 3)};
  CHECK_NOTHROW(merge_parts(cell, ps));
  CHECK_THROWS_AS(merge_parts(cell, {ps[0], ps[2]}), ikv::Error);
  CHECK_THROWS_AS(merge_parts(cell, {ps[1], ps[0], ps[2]}), ikv::Error);
  auto shifted = ps;
  shifted[1].begin += 1;
  CHECK_THROWS_AS(merge_parts(cell, shifted), ikv::Error);
  auto short_values = ps;
  short_values[2].values[0].values.pop_back();
  CHECK_THROWS_AS(merge_parts(cell, short_values), ikv::Error);
  CHECK_THROWS_AS(merge_parts(cell, {}), ikv::Error);
}

TEST_CASE("parts_for: only large splittable cells, only with several workers") {
  const Plan plan = small_plan();
  const Cell& ppl = first_cell_of_kind(plan, "ppl");  // 2 windows x 64 = 128 tokens
  RunOptions opt;
  opt.split_tokens = 1e6;
  CHECK(parts_for(ppl, 4, opt) == 1);
  opt.split_tokens = 50;
  CHECK(parts_for(ppl, 1, opt) == 1);
  CHECK(parts_for(ppl, 4, opt) == 3);  // ceil(128 / 50)
  opt.split_tokens = 1;
  CHECK(parts_for(ppl, 4, opt) == 8);  // at most 2 per worker
  opt.split_tokens = 0;
  CHECK(parts_for(ppl, 4, opt) == 1);
}

TEST_CASE("scheduler: an artifact is made by one worker while the others do other work") {
  // Cells 0, 1 need the W3 weights, cells 2, 3 the W4 weights.
  const Plan plan = make_plan(parse_config(R"(
models: [{name: tiny, path: models/tiny}]
quantizers: [{method: rtn, wbits: 3, group: 128}, {method: rtn, wbits: 4, group: 128}]
intactkv: [none]
tasks: {qa: {tasks: [arc_easy, boolq], limit: 10}}
)", "two-quant.yaml"), fake_identities());
  REQUIRE(plan.cells.size() == 4);
  Scheduler s(plan, {0, 1, 2, 3}, {1, 1, 1, 1}, {});
  auto a = s.assign(0);
  REQUIRE(a);
  CHECK(a->cell == 0);  // makes W3
  CHECK(a->artifacts.empty());
  auto b = s.assign(1);
  REQUIRE(b);
  CHECK(b->cell == 2);  // not cell 1, which waits for W3: makes W4
  CHECK(!s.assign(2));  // everything left waits for an artifact in the making
  CHECK(s.complete(0, fake_unit(plan, *a)));
  CHECK(s.known().count(plan.cells[0].quant_key));
  auto c = s.assign(2);
  REQUIRE(c);
  CHECK(c->cell == 1);
  REQUIRE(c->artifacts.size() == 1);  // loads W3 from where worker 0 saved it
  CHECK(c->artifacts[0].key == plan.cells[0].quant_key);
  CHECK(!s.assign(0));  // cell 3 waits for W4
  s.complete(1, fake_unit(plan, *b));
  auto d = s.assign(0);
  REQUIRE(d);
  CHECK(d->cell == 3);
  REQUIRE(d->artifacts.size() == 1);
  s.complete(0, fake_unit(plan, *d));
  s.complete(2, fake_unit(plan, *c));
  CHECK(s.finished());
}

TEST_CASE("scheduler: a worker prefers units whose artifacts it holds") {
  const Plan plan = small_plan();  // cells 4..7 rtn-w3 none, 8..11 rtn-w3 bos
  std::vector<size_t> todo = {4, 8, 9};
  Scheduler s(plan, todo, {1, 1, 1}, {});
  auto a = s.assign(0);  // makes the W3 weights
  REQUIRE(a);
  CHECK(a->cell == 4);
  s.complete(0, fake_unit(plan, *a));
  auto b = s.assign(1);  // makes the <bos> prefix
  REQUIRE(b);
  CHECK(b->cell == 8);
  s.complete(1, fake_unit(plan, *b));
  auto c = s.assign(1);  // worker 1 holds both artifacts of cell 9
  REQUIRE(c);
  CHECK(c->cell == 9);
  CHECK(c->artifacts.size() == 2);
}

TEST_CASE("scheduler: a lost worker's unit is re-queued, and fails its cell after 3 losses") {
  const Plan plan = small_plan();
  Scheduler s(plan, {0, 1}, {1, 3}, {});
  auto u = s.assign(5);
  REQUIRE(u);
  CHECK(u->cell == 0);
  CHECK(!s.lost(5));  // re-queued
  auto again = s.assign(6);
  REQUIRE(again);
  CHECK(again->cell == 0);
  CHECK(again->attempt == 2);
  CHECK(!s.lost(6));
  auto third = s.assign(7);
  REQUIRE(third);
  CHECK(third->attempt == 3);
  auto failed = s.lost(7);
  REQUIRE(failed);
  CHECK(!failed->ok);
  CHECK(failed->error.find("lost 3 workers") != std::string::npos);
  // The 3 parts of cell 1 are still there; a result for a unit not running is refused.
  CHECK_THROWS_AS(s.complete(9, fake_unit(plan, *third)), ikv::Error);
  int parts = 0;
  std::optional<Scheduler::Finished> done;
  while (auto p = s.assign(1)) {
    CHECK(p->cell == 1);
    ++parts;
    done = s.complete(1, fake_unit(plan, *p));
  }
  CHECK(parts == 3);
  REQUIRE(done);
  CHECK(done->ok);
  CHECK(done->parts == 3);
  CHECK(s.finished());
}

namespace {

struct ThreadWorkers {
  LocalHub hub;
  std::vector<std::thread> threads;
  std::vector<ServeOutcome> outcomes;
  explicit ThreadWorkers(int n) : hub(n), outcomes(n) {}
  void start(int w, WorkerHooks hooks, const RunOptions& opt) {
    threads.emplace_back([this, w, hooks, opt] { outcomes[w] = serve(hub.worker(w), hooks, opt); });
  }
  void join() {
    for (auto& t : threads) t.join();
  }
};

WorkerHooks fake_hooks(const Plan& plan) {
  return {[&plan] { return plan_digest(plan); }, [&plan](const WorkUnit& u) { return fake_unit(plan, u); }};
}

// The reference the distributed runs are compared with: the plan run in this process.
void run_in_one_process(const Plan& plan, Store& store) {
  std::ostringstream log;
  RunOptions ro;
  ro.log = &log;
  ro.progress_bar = 0;
  REQUIRE(run_plan(plan, store, fake_whole, ro).ok());
}

RunOptions fast_options(std::ostream& log) {
  RunOptions opt;
  opt.log = &log;
  opt.timeout = 1.0;
  opt.split_tokens = 50;  // PPL cells (128 tokens) into 3 parts, QA cells into 2 per worker
  return opt;
}

}  // namespace

TEST_CASE("coordinate: three workers store what one process stores, bit for bit") {
  TempDir dir;
  const Plan plan = small_plan();
  Store plain(dir / "plain.sqlite"), dist(dir / "dist.sqlite");
  run_in_one_process(plan, plain);
  std::ostringstream log;

  ThreadWorkers workers(3);
  const RunOptions opt = fast_options(log);
  for (int w = 0; w < 3; ++w) workers.start(w, fake_hooks(plan), opt);
  const RunSummary s = coordinate(plan, dist, workers.hub, opt);
  workers.join();
  CAPTURE(log.str());
  CHECK(s.ok());
  CHECK(s.clean());
  CHECK(s.executed == plan.cells.size());
  for (const auto& o : workers.outcomes) {
    CHECK(o.stopped);
    CHECK(o.finalize);
  }
  check_same_cells(plain, dist, plan);
  CHECK(log.str().find("(3 parts)") != std::string::npos);  // the PPL cells were split
  // Each artifact was reported (made) once.
  std::set<std::string> keys;
  for (const Cell& c : plan.cells)
    for (const std::string& k : {c.quant_key, c.intactkv_key})
      if (!k.empty()) keys.insert(k);
  for (const std::string& k : keys) {
    CAPTURE(k);
    size_t count = 0;
    for (size_t at = log.str().find(k.substr(0, 12)); at != std::string::npos; at = log.str().find(k.substr(0, 12), at + 1))
      ++count;
    CHECK(count == 1);
  }

  // A second distributed run finds everything stored.
  ThreadWorkers again(2);
  std::ostringstream log2;
  const RunOptions opt2 = fast_options(log2);
  for (int w = 0; w < 2; ++w) again.start(w, fake_hooks(plan), opt2);
  const RunSummary s2 = coordinate(plan, dist, again.hub, opt2);
  again.join();
  CHECK(s2.reused == plan.cells.size());
  CHECK(s2.executed == 0);
}

TEST_CASE("coordinate: a worker killed mid-unit is lost, its unit re-queued, results unchanged") {
  TempDir dir;
  const Plan plan = small_plan();
  Store plain(dir / "plain.sqlite"), dist(dir / "dist.sqlite");
  run_in_one_process(plan, plain);
  std::ostringstream log;

  ThreadWorkers workers(3);
  const RunOptions opt = fast_options(log);
  for (int w = 0; w < 2; ++w)
    workers.start(w,
                  {[&plan] { return plan_digest(plan); },
                   [&plan](const WorkUnit& u) {
                     std::this_thread::sleep_for(std::chrono::milliseconds(20));
                     return fake_unit(plan, u);
                   }},
                  opt);
  // Worker 2 dies during its second unit: its link goes silent, as a SIGKILLed rank's would.
  auto units = std::make_shared<std::atomic<int>>(0);
  LocalHub& hub = workers.hub;
  workers.start(2,
                {[&plan] { return plan_digest(plan); },
                 [&plan, units, &hub](const WorkUnit& u) {
                   if (++*units == 2) hub.cut(2);
                   std::this_thread::sleep_for(std::chrono::milliseconds(20));
                   return fake_unit(plan, u);
                 }},
                opt);
  const RunSummary s = coordinate(plan, dist, workers.hub, opt);
  workers.join();
  CAPTURE(log.str());
  CHECK(s.ok());
  REQUIRE(s.lost.size() == 1);
  CHECK(s.lost[0] == "local worker 2");
  CHECK(log.str().find("local worker 2: no message for 1 s: lost; re-queued") != std::string::npos);
  CHECK(!workers.outcomes[2].stopped);  // it gave up on the coordinator itself
  CHECK(workers.outcomes[0].stopped);
  CHECK(!workers.outcomes[0].finalize);  // a rank died: nobody may wait for it in MPI_Finalize
  check_same_cells(plain, dist, plan);
}

TEST_CASE("coordinate: a worker whose plan differs is not used; a failing cell fails the run") {
  TempDir dir;
  const Plan plan = small_plan();
  Store store(dir / "ikv.sqlite");
  std::ostringstream log;
  ThreadWorkers workers(2);
  const RunOptions opt = fast_options(log);
  workers.start(0, {[] { return std::string("another plan"); }, [&plan](const WorkUnit& u) { return fake_unit(plan, u); }},
                opt);
  workers.start(1,
                {[&plan] { return plan_digest(plan); },
                 [&plan](const WorkUnit& u) {
                   UnitResult r = fake_unit(plan, u);
                   if (u.cell == 5) r.ok = false, r.error = "boom";
                   return r;
                 }},
                opt);
  const RunSummary s = coordinate(plan, store, workers.hub, opt);
  workers.join();
  CAPTURE(log.str());
  CHECK(log.str().find("local worker 0: its plan differs from rank 0's") != std::string::npos);
  CHECK(s.failed == 1);
  CHECK(s.stopped);
  CHECK(s.errors.at(0).find("boom") != std::string::npos);
  CHECK(s.executed < plan.cells.size());
  CHECK(workers.outcomes[0].stopped);
  CHECK(workers.outcomes[1].stopped);
}
