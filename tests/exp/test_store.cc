#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "exp/exp_fixtures.h"
#include "exp/store.h"
#include "io/error.h"

using namespace ikv::exp;
using ikv::exp::testing::same_bits;
using ikv::exp::testing::TempDir;

namespace {

CellRecord sample_cell(const std::string& key) {
  CellRecord c;
  c.key = key;
  c.model = "tiny", c.quant = "rtn-w3g128", c.kv_bits = 4, c.intactkv = "bos", c.task_kind = "qa",
  c.task = "arc_easy";
  c.seconds = 1.25;
  c.metrics = {{"acc", 0.1 + 0.2, 0.0123, 10}, {"acc_norm", 0.5, std::nan(""), 10}};
  c.outcomes = {{"acc", {1, 0, 1, 1, 0, 1, 0, 0, 1, 1e-300}}};
  return c;
}

int64_t count_rows(const std::string& db, const char* table) {
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(raw, (std::string("SELECT COUNT(*) FROM ") + table).c_str(), -1, &s, nullptr) ==
          SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  const int64_t n = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(raw);
  return n;
}

}  // namespace

TEST_CASE("store: put, get, reopen") {
  TempDir dir;
  const std::string db = dir / "results/ikv.sqlite";  // the folder is created
  const CellRecord in = sample_cell("k1");
  {
    Store store(db);
    CHECK(!store.has_cell("k1"));
    store.put_cell(in);
    CHECK(store.has_cell("k1"));
  }
  Store store(db);
  CHECK(store.integrity_check() == "ok");
  const auto out = store.get_cell("k1");
  REQUIRE(out);
  CHECK(out->model == "tiny");
  CHECK(out->quant == "rtn-w3g128");
  CHECK(out->kv_bits == 4);
  CHECK(out->intactkv == "bos");
  CHECK(out->task_kind == "qa");
  CHECK(out->task == "arc_easy");
  CHECK(out->seconds == 1.25);
  CHECK(out->finished_at.size() == 20);  // filled in: 2024-01-01T00:00:00Z
  REQUIRE(out->metrics.size() == 2);
  CHECK(out->metrics[0] == in.metrics[0]);
  CHECK(same_bits(out->metrics[0].value, 0.1 + 0.2));
  CHECK(std::isnan(out->metrics[1].std_err));  // NaN survives (SQLite stores it as NULL)
  CHECK(out->outcomes == in.outcomes);
  CHECK(out->metric("acc_norm")->value == 0.5);
  CHECK(out->metric("missing") == nullptr);
  CHECK(!store.get_cell("nope"));
  CHECK(store_path("") == "results/ikv.sqlite");
  CHECK(store_path("out") == "out/ikv.sqlite");
  CHECK(count_rows(db, "schema_version") == 1);
}

TEST_CASE("store: a cell is written whole or not at all") {
  TempDir dir;
  const std::string db = dir / "ikv.sqlite";
  Store store(db);
  CellRecord bad = sample_cell("k1");
  bad.metrics.push_back(bad.metrics[0]);  // a repeated metric name violates the primary key...
  CHECK_THROWS_AS(store.put_cell(bad), ikv::Error);
  CHECK(!store.has_cell("k1"));  // ...after the cell row was inserted: it was rolled back with it
  CHECK(count_rows(db, "metrics") == 0);
  CHECK(count_rows(db, "item_outcomes") == 0);

  // Replacing a cell replaces its metrics and outcomes, it does not add to them.
  store.put_cell(sample_cell("k1"));
  CellRecord again = sample_cell("k1");
  again.metrics.resize(1);
  again.metrics[0].value = 0.9;
  again.outcomes.clear();
  store.put_cell(again);
  const auto out = store.get_cell("k1");
  REQUIRE(out);
  CHECK(out->metrics.size() == 1);
  CHECK(out->metrics[0].value == 0.9);
  CHECK(out->outcomes.empty());
  CHECK(count_rows(db, "item_outcomes") == 0);

  // A failed replacement keeps the old record.
  CHECK_THROWS_AS(store.put_cell(bad), ikv::Error);
  REQUIRE(store.get_cell("k1"));
  CHECK(store.get_cell("k1")->metrics[0].value == 0.9);
}

TEST_CASE("store: runs, run cells and labels") {
  TempDir dir;
  Store store(dir / "ikv.sqlite");
  CHECK(!store.latest_run());
  const int64_t run = store.begin_run("cfg.yaml", "abc", "ikv-test");
  auto info = store.get_run(run);
  REQUIRE(info);
  CHECK(info->config_path == "cfg.yaml");
  CHECK(info->config_sha256 == "abc");
  CHECK(info->ikv_version == "ikv-test");
  CHECK(info->cores > 0);
  CHECK(info->finished_at.empty());
  CHECK(!info->hostname.empty());

  std::vector<CellRecord> cells = {sample_cell("b"), sample_cell("a"), sample_cell("c")};
  store.put_cell(cells[1]);
  store.put_cell(cells[0]);
  cells[0].model = "renamed";  // labels follow the latest run
  store.add_run_cells(run, cells);
  const auto done = store.cells_of_run(run);  // only finished cells, in plan order
  REQUIRE(done.size() == 2);
  CHECK(done[0].key == "b");
  CHECK(done[0].model == "renamed");
  CHECK(done[1].key == "a");
  CHECK(done[0].metrics.size() == 2);
  CHECK(done[0].outcomes.size() == 1);

  store.finish_run(run);
  const int64_t second = store.begin_run("cfg.yaml", "abc", "ikv-test");
  CHECK(second > run);
  CHECK(store.latest_run()->id == second);
  CHECK(!store.get_run(run)->finished_at.empty());
  CHECK(store.runs().size() == 2);
}

TEST_CASE("store: artifacts") {
  TempDir dir;
  Store store(dir / "ikv.sqlite");
  CHECK(!store.get_artifact("q1"));
  store.put_artifact({"q1", "quant", "artifacts/q1.safetensors", "deadbeef", ""});
  const auto a = store.get_artifact("q1");
  REQUIRE(a);
  CHECK(a->kind == "quant");
  CHECK(a->path == "artifacts/q1.safetensors");
  CHECK(a->sha256 == "deadbeef");
  CHECK(!a->created_at.empty());
  store.put_artifact({"q1", "quant", "moved.safetensors", "deadbeef", "2024-01-01T00:00:00Z"});
  CHECK(store.get_artifact("q1")->path == "moved.safetensors");
}

TEST_CASE("store: errors name the database") {
  TempDir dir;
  std::filesystem::create_directories(dir / "a-folder");
  auto error_of = [](const std::string& path) {
    try {
      Store store(path);
    } catch (const ikv::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error_of(dir / "a-folder").starts_with(dir / "a-folder: cannot open results store: "));
  {
    std::ofstream junk(dir / "junk.sqlite");
    junk << "this is not a database, just some text that is long enough to have a header........";
  }
  CHECK(error_of(dir / "junk.sqlite") == dir / "junk.sqlite: file is not a database");

  // A store written by a build with another schema is refused, not misread.
  const std::string db = dir / "future.sqlite";
  { Store store(db); }
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
  REQUIRE(sqlite3_exec(raw, "UPDATE schema_version SET version = 99", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  sqlite3_close(raw);
  CHECK(error_of(db) == db + ": results store has schema version 99, this build reads 1");
}
