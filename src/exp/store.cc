#include "exp/store.h"

#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>

#include "exp/sqlite_stmt.h"
#include "io/error.h"

namespace ikv::exp {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, config_path TEXT, config_sha256 TEXT,
  started_at TEXT, finished_at TEXT, hostname TEXT, cores INTEGER, cpu_model TEXT, ikv_version TEXT);
CREATE TABLE IF NOT EXISTS cells (
  key TEXT PRIMARY KEY, model TEXT, quant TEXT, kv_bits INTEGER, intactkv TEXT, task_kind TEXT,
  task TEXT, status TEXT NOT NULL DEFAULT 'done', seconds REAL, finished_at TEXT);
CREATE TABLE IF NOT EXISTS run_cells (
  run_id INTEGER NOT NULL REFERENCES runs(id), cell_key TEXT NOT NULL, ordinal INTEGER NOT NULL,
  PRIMARY KEY (run_id, cell_key));
CREATE TABLE IF NOT EXISTS metrics (
  cell_key TEXT NOT NULL REFERENCES cells(key) ON DELETE CASCADE, name TEXT NOT NULL,
  value REAL, stderr REAL, n INTEGER, PRIMARY KEY (cell_key, name));
CREATE TABLE IF NOT EXISTS item_outcomes (
  cell_key TEXT NOT NULL REFERENCES cells(key) ON DELETE CASCADE, metric TEXT NOT NULL,
  outcomes BLOB NOT NULL, PRIMARY KEY (cell_key, metric));
CREATE TABLE IF NOT EXISTS artifacts (
  key TEXT PRIMARY KEY, kind TEXT, path TEXT, sha256 TEXT, created_at TEXT);
CREATE TABLE IF NOT EXISTS run_options (
  run_id INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, value TEXT, PRIMARY KEY (run_id, name));
)sql";

// Column order read_cell_row / read_run_row expect.
constexpr const char* kCellColumns =
    "key, model, quant, kv_bits, intactkv, task_kind, task, seconds, finished_at";
constexpr const char* kRunColumns =
    "id, config_path, config_sha256, started_at, finished_at, hostname, cores, cpu_model, ikv_version";

CellRecord read_cell_row(const Stmt& s) {
  CellRecord c;
  c.key = s.col_text(0);
  c.model = s.col_text(1);
  c.quant = s.col_text(2);
  c.kv_bits = static_cast<int>(s.col_int(3));
  c.intactkv = s.col_text(4);
  c.task_kind = s.col_text(5);
  c.task = s.col_text(6);
  c.seconds = s.col_real(7);
  c.finished_at = s.col_text(8);
  return c;
}

RunInfo read_run_row(const Stmt& s) {
  return RunInfo{s.col_int(0),
                 s.col_text(1),
                 s.col_text(2),
                 s.col_text(3),
                 s.col_text(4),
                 s.col_text(5),
                 static_cast<int>(s.col_int(6)),
                 s.col_text(7),
                 s.col_text(8)};
}

std::string hostname() {
  char buf[256] = {};
  return gethostname(buf, sizeof buf - 1) == 0 ? buf : "";
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      return colon == std::string::npos ? "" : line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "";
}

}  // namespace

const Metric* CellRecord::metric(std::string_view name) const {
  for (const auto& m : metrics)
    if (m.name == name) return &m;
  return nullptr;
}

const ItemOutcomes* CellRecord::outcomes_of(std::string_view name) const {
  for (const auto& o : outcomes)
    if (o.metric == name) return &o;
  return nullptr;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string store_path(const std::string& results_dir) {
  return (std::filesystem::path(results_dir.empty() ? "results" : results_dir) / "ikv.sqlite").string();
}

namespace {

// What is at `path` before SQLite touches it: nothing (a new store), or a non-empty regular file
// that starts with SQLite's header. Anything else is refused before it is opened, because opening
// it read-write would turn a 0-byte file (or a truncated one) into a fresh, empty store.
bool existing_store_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) return false;
  if (!fs::is_regular_file(st)) fail(path, ": cannot open results store: not a regular file");
  // Stores are created whole (create_store_file), so an empty file was never one of ours.
  if (fs::file_size(path, ec) == 0) fail(path, ": results store is an empty file (not an ikv store; move it away)");
  char head[16] = {};
  std::ifstream in(path, std::ios::binary);
  in.read(head, sizeof head);
  if (in.gcount() != sizeof head || std::memcmp(head, "SQLite format 3", 16) != 0)
    fail(path, ": file is not a database");
  return true;
}

// A new store is built under a temporary name (rollback journal, so everything is in the one
// file) and linked into place, which fails if another process got there first: a reader never
// sees a half-made store, and a 0-byte ikv.sqlite can be refused as foreign.
void create_store_file(const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  const std::string tmp = path + ".new-" + std::to_string(::getpid());
  std::filesystem::remove(tmp, ec);
  sqlite3* db = nullptr;
  std::string error;
  if (sqlite3_open_v2(tmp.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    error = db ? sqlite3_errmsg(db) : "out of memory";
  } else {
    const std::string sql = std::string("BEGIN;") + kSchema + "INSERT INTO schema_version (version) VALUES (" +
                            std::to_string(Store::kSchemaVersion) + ");COMMIT;";
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) error = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
  }
  sqlite3_close(db);
  if (error.empty() && ::link(tmp.c_str(), path.c_str()) != 0 && errno != EEXIST)
    error = std::string("cannot create (") + std::strerror(errno) + ")";
  std::filesystem::remove(tmp, ec);
  if (!error.empty()) fail(path, ": cannot open results store: ", error);
}

}  // namespace

Store::Store(const std::string& path, Access access) : path_(path) {
  if (!existing_store_file(path)) {
    if (access == Access::ReadOnly) fail(path, ": no results store");
    create_store_file(path);
  }
  const int flags = access == Access::ReadOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    fail(path, ": cannot open results store: ", msg);
  }
  try {
    sqlite3_busy_timeout(db_, 10000);  // another process (a report, a second run) may hold a lock
    // The file is checked before anything is written to it: a store that fails is left exactly
    // as it was.
    {
      std::string check;
      {
        Stmt q(db_, path_, "PRAGMA quick_check");
        while (q.step()) check += (check.empty() ? "" : "; ") + q.col_text(0);
      }
      if (check != "ok") fail(path_, ": results store is corrupt (quick_check: ", check.substr(0, 200), ")");
      Stmt tables(db_, path_, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'");
      tables.step();
      if (tables.col_int(0) == 0) fail(path_, ": not an ikv results store (an SQLite database without ikv's tables)");
    }
    if (access == Access::ReadOnly) {
      Stmt get(db_, path_, "SELECT version FROM schema_version");
      if (get.step() && get.col_int(0) != kSchemaVersion)
        fail(path_, ": results store has schema version ", get.col_int(0), ", this build reads ", kSchemaVersion);
      return;
    }
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
    exec("PRAGMA foreign_keys=ON");
    transaction([&] {
      exec(kSchema);
      Stmt get(db_, path_, "SELECT version FROM schema_version");
      if (!get.step()) {
        Stmt(db_, path_, "INSERT INTO schema_version (version) VALUES (?)").integer(1, kSchemaVersion).run();
      } else if (get.col_int(0) != kSchemaVersion) {
        fail(path_, ": results store has schema version ", get.col_int(0), ", this build reads ",
             kSchemaVersion);
      }
    });
  } catch (...) {  // the destructor does not run for a constructor that throws
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

Store::~Store() {
  if (db_) sqlite3_close(db_);
}

Store::Store(Store&& other) noexcept
    : path_(std::move(other.path_)), db_(std::exchange(other.db_, nullptr)) {}

Store& Store::operator=(Store&& other) noexcept {
  if (this != &other) {
    if (db_) sqlite3_close(db_);
    path_ = std::move(other.path_);
    db_ = std::exchange(other.db_, nullptr);
  }
  return *this;
}

void Store::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    fail(path_, ": ", msg);
  }
}

template <typename F>
void Store::transaction(F&& body) {
  exec("BEGIN IMMEDIATE");
  try {
    body();
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

int64_t Store::begin_run(const std::string& config_path, const std::string& config_sha256,
                         const std::string& ikv_version) {
  Stmt s(db_, path_,
         "INSERT INTO runs (config_path, config_sha256, started_at, hostname, cores, cpu_model, ikv_version) "
         "VALUES (?, ?, ?, ?, ?, ?, ?)");
  s.text(1, config_path).text(2, config_sha256).text(3, utc_now()).text(4, hostname());
  s.integer(5, std::thread::hardware_concurrency()).text(6, cpu_model()).text(7, ikv_version).run();
  return sqlite3_last_insert_rowid(db_);
}

void Store::finish_run(int64_t run_id) {
  Stmt(db_, path_, "UPDATE runs SET finished_at = ? WHERE id = ?")
      .text(1, utc_now())
      .integer(2, run_id)
      .run();
}

void Store::add_run_cells(int64_t run_id, const std::vector<CellRecord>& cells) {
  transaction([&] {
    Stmt link(db_, path_, "INSERT OR REPLACE INTO run_cells (run_id, cell_key, ordinal) VALUES (?, ?, ?)");
    Stmt relabel(db_, path_,
                 "UPDATE cells SET model = ?, quant = ?, kv_bits = ?, intactkv = ?, task_kind = ?, task = ? "
                 "WHERE key = ?");
    for (size_t i = 0; i < cells.size(); ++i) {
      const CellRecord& c = cells[i];
      link.integer(1, run_id).text(2, c.key).integer(3, static_cast<int64_t>(i)).run();
      relabel.text(1, c.model).text(2, c.quant).integer(3, c.kv_bits).text(4, c.intactkv);
      relabel.text(5, c.task_kind).text(6, c.task).text(7, c.key).run();
    }
  });
}

std::optional<RunInfo> Store::get_run(int64_t run_id) {
  Stmt s(db_, path_, std::string("SELECT ") + kRunColumns + " FROM runs WHERE id = ?");
  s.integer(1, run_id);
  if (!s.step()) return std::nullopt;
  return read_run_row(s);
}

std::optional<RunInfo> Store::latest_run() {
  Stmt s(db_, path_, std::string("SELECT ") + kRunColumns + " FROM runs ORDER BY id DESC LIMIT 1");
  if (!s.step()) return std::nullopt;
  return read_run_row(s);
}

std::vector<RunInfo> Store::runs() {
  Stmt s(db_, path_, std::string("SELECT ") + kRunColumns + " FROM runs ORDER BY id");
  std::vector<RunInfo> out;
  while (s.step()) out.push_back(read_run_row(s));
  return out;
}

bool Store::has_cell(const std::string& key) {
  Stmt s(db_, path_, "SELECT 1 FROM cells WHERE key = ?");
  s.text(1, key);
  return s.step();
}

void Store::put_cell(const CellRecord& c) {
  transaction([&] {
    Stmt(db_, path_, "DELETE FROM cells WHERE key = ?").text(1, c.key).run();  // cascades
    Stmt cell(db_, path_,
              "INSERT INTO cells (key, model, quant, kv_bits, intactkv, task_kind, task, status, seconds, "
              "finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'done', ?, ?)");
    cell.text(1, c.key).text(2, c.model).text(3, c.quant).integer(4, c.kv_bits).text(5, c.intactkv);
    cell.text(6, c.task_kind).text(7, c.task).real(8, c.seconds);
    cell.text(9, c.finished_at.empty() ? utc_now() : c.finished_at).run();
    Stmt metric(db_, path_, "INSERT INTO metrics (cell_key, name, value, stderr, n) VALUES (?, ?, ?, ?, ?)");
    for (const Metric& m : c.metrics)
      metric.text(1, c.key).text(2, m.name).real(3, m.value).real(4, m.std_err).integer(5, m.n).run();
    Stmt outcome(db_, path_, "INSERT INTO item_outcomes (cell_key, metric, outcomes) VALUES (?, ?, ?)");
    for (const ItemOutcomes& o : c.outcomes)
      outcome.text(1, c.key).text(2, o.metric).doubles(3, o.values).run();
  });
}

void Store::load_details(CellRecord& c) {
  Stmt metric(db_, path_, "SELECT name, value, stderr, n FROM metrics WHERE cell_key = ? ORDER BY rowid");
  metric.text(1, c.key);
  while (metric.step())
    c.metrics.push_back({metric.col_text(0), metric.col_real(1), metric.col_real(2), metric.col_int(3)});
  Stmt outcome(db_, path_, "SELECT metric, outcomes FROM item_outcomes WHERE cell_key = ? ORDER BY rowid");
  outcome.text(1, c.key);
  while (outcome.step()) c.outcomes.push_back({outcome.col_text(0), outcome.col_doubles(1)});
}

std::optional<CellRecord> Store::get_cell(const std::string& key) {
  Stmt s(db_, path_, std::string("SELECT ") + kCellColumns + " FROM cells WHERE key = ?");
  s.text(1, key);
  if (!s.step()) return std::nullopt;
  CellRecord c = read_cell_row(s);
  load_details(c);
  return c;
}

std::vector<CellRecord> Store::cells_of_run(int64_t run_id) {
  const std::string sql =
      "SELECT c.key, c.model, c.quant, c.kv_bits, c.intactkv, c.task_kind, c.task, c.seconds, c.finished_at "
      "FROM run_cells r JOIN cells c ON c.key = r.cell_key WHERE r.run_id = ? ORDER BY r.ordinal";
  Stmt s(db_, path_, sql);
  s.integer(1, run_id);
  std::vector<CellRecord> out;
  while (s.step()) out.push_back(read_cell_row(s));
  for (CellRecord& c : out) load_details(c);
  return out;
}

void Store::put_artifact(const ArtifactRecord& a) {
  Stmt s(db_, path_,
         "INSERT OR REPLACE INTO artifacts (key, kind, path, sha256, created_at) VALUES (?, ?, ?, ?, ?)");
  s.text(1, a.key).text(2, a.kind).text(3, a.path).text(4, a.sha256);
  s.text(5, a.created_at.empty() ? utc_now() : a.created_at).run();
}

std::optional<ArtifactRecord> Store::get_artifact(const std::string& key) {
  Stmt s(db_, path_, "SELECT key, kind, path, sha256, created_at FROM artifacts WHERE key = ?");
  s.text(1, key);
  if (!s.step()) return std::nullopt;
  return ArtifactRecord{s.col_text(0), s.col_text(1), s.col_text(2), s.col_text(3), s.col_text(4)};
}

void Store::set_run_option(int64_t run_id, const std::string& name, const std::string& value) {
  Stmt(db_, path_, "INSERT OR REPLACE INTO run_options (run_id, name, value) VALUES (?, ?, ?)")
      .integer(1, run_id)
      .text(2, name)
      .text(3, value)
      .run();
}

std::map<std::string, std::string> Store::run_options(int64_t run_id) {
  std::map<std::string, std::string> out;
  // Stores made before run options existed, opened read-only, lack the table: no options.
  Stmt has(db_, path_, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'run_options'");
  if (!has.step() || has.col_int(0) == 0) return out;
  Stmt s(db_, path_, "SELECT name, value FROM run_options WHERE run_id = ?");
  s.integer(1, run_id);
  while (s.step()) out[s.col_text(0)] = s.col_text(1);
  return out;
}

std::string Store::integrity_check() {
  Stmt s(db_, path_, "PRAGMA integrity_check");
  std::string result;
  while (s.step()) result += (result.empty() ? "" : "; ") + s.col_text(0);
  return result;
}

}  // namespace ikv::exp
