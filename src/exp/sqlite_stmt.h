// A prepared SQLite statement with errors turned into ikv::Error naming the database file.
// Internal to the results store.
#pragma once
#include <sqlite3.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "io/error.h"

namespace ikv::exp {

// One prepared statement. As in SQLite, bind positions are 1-based and column indexes 0-based.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& db_path, const std::string& sql) : db_(db), db_path_(db_path) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK)
      fail(db_path_, ": prepare \"", sql.substr(0, 40), "\": ", sqlite3_errmsg(db));
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& text(int i, const std::string& s) {
    return check(sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT));
  }
  Stmt& integer(int i, int64_t v) { return check(sqlite3_bind_int64(stmt_, i, v)); }
  Stmt& real(int i, double v) { return check(sqlite3_bind_double(stmt_, i, v)); }  // NaN binds as NULL
  Stmt& doubles(int i, const std::vector<double>& v) {
    return check(
        sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size() * sizeof(double)), SQLITE_TRANSIENT));
  }
  // True while a row is available.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(db_path_, ": ", sqlite3_sql(stmt_), ": ", sqlite3_errmsg(db_));
  }
  // Executes a statement that returns no rows and makes it ready for new bindings.
  void run() {
    step();
    sqlite3_reset(stmt_);
  }

  std::string col_text(int i) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
    return p ? std::string(p, sqlite3_column_bytes(stmt_, i)) : std::string();
  }
  int64_t col_int(int i) const { return sqlite3_column_int64(stmt_, i); }
  double col_real(int i) const {  // NULL is how SQLite stores NaN
    return sqlite3_column_type(stmt_, i) == SQLITE_NULL ? std::numeric_limits<double>::quiet_NaN()
                                                        : sqlite3_column_double(stmt_, i);
  }
  std::vector<double> col_doubles(int i) const {
    std::vector<double> v(sqlite3_column_bytes(stmt_, i) / sizeof(double));
    if (!v.empty()) std::memcpy(v.data(), sqlite3_column_blob(stmt_, i), v.size() * sizeof(double));
    return v;
  }

 private:
  Stmt& check(int rc) {
    if (rc != SQLITE_OK) fail(db_path_, ": bind: ", sqlite3_errmsg(db_));
    return *this;
  }
  sqlite3* db_;
  const std::string& db_path_;
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace ikv::exp
