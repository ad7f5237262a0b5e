// Helpers shared by the exp tests: fixture paths, temporary folders, small plans and fake
// executors (deterministic in the cell key, so a resumed run must reproduce a clean one bit for bit).
#pragma once
#include <doctest/doctest.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>

#include "exp/config.h"
#include "exp/plan.h"
#include "exp/store.h"
#include "io/error.h"

namespace ikv::exp::testing {

// The error parse_config raises for a config text (as if read from t.yaml), or "no error".
inline std::string config_error(const std::string& text) {
  try {
    parse_config(text, "t.yaml");
  } catch (const ikv::Error& e) {
    return e.what();
  }
  return "no error";
}

inline std::string config_fixture(const std::string& name) {
  return std::string(IKV_SOURCE_DIR) + "/data/fixtures/configs/" + name;
}

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/ikv-exp-test-XXXXXX";
    path_ = mkdtemp(pattern);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline Identities fake_identities() {
  return {[](const ModelSpec& m) { return "fp-of-" + m.path; },
          [](const std::string& d) { return "sum-of-" + d; },
          [](const std::string& f) { return "sha-of-" + f; }};
}

// 1 model x {fp, rtn-w3g128} x kv16 x {none, bos} x (2 ppl datasets, 2 QA tasks) = 4 + 8 cells.
inline const char* kSmallConfig = R"(
models: [{name: tiny, path: models/tiny}]
quantizers: [fp, {method: rtn, wbits: 3, group: 128}]
intactkv: [none, bos]
tasks:
  ppl: {datasets: [wikitext2, ptb], ctx: 64, windows: 2}
  qa: {tasks: [arc_easy, boolq], limit: 10}
)";

inline Plan small_plan() { return make_plan(parse_config(kSmallConfig, "small.yaml"), fake_identities()); }

// Metrics and outcomes as a pure function of the key.
inline CellRecord fake_result(const Cell& cell) {
  std::seed_seq seq(cell.key.begin(), cell.key.end());
  std::mt19937_64 rng(seq);
  auto uniform = [&] { return static_cast<double>(rng() >> 11) * 0x1.0p-53; };
  CellRecord r;
  const bool ppl = task_kind(cell.task) == "ppl";
  r.metrics.push_back({ppl ? "ppl" : "acc", ppl ? 5 + 20 * uniform() : uniform(), uniform() / 100, 50});
  r.metrics.push_back({"tokens", 1000 * uniform(), std::nan(""), 50});
  ItemOutcomes o{ppl ? "nll" : "acc", {}};
  for (int i = 0; i < 50; ++i) o.values.push_back(ppl ? 3 * uniform() : (uniform() < 0.5 ? 0.0 : 1.0));
  r.outcomes.push_back(o);
  return r;
}

inline bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Every cell of the plan is in both stores with bit-identical metrics and per-item outcomes (a
// resumed run vs a clean one, a distributed run vs a plain one).
inline void check_same_cells(Store& a, Store& b, const Plan& plan) {
  for (const Cell& cell : plan.cells) {
    CAPTURE(cell.describe());
    const auto x = a.get_cell(cell.key), y = b.get_cell(cell.key);
    REQUIRE(x);
    REQUIRE(y);
    REQUIRE(x->metrics.size() == y->metrics.size());
    for (size_t i = 0; i < x->metrics.size(); ++i) {
      CHECK(x->metrics[i].name == y->metrics[i].name);
      CHECK(same_bits(x->metrics[i].value, y->metrics[i].value));
      CHECK(same_bits(x->metrics[i].std_err, y->metrics[i].std_err));
      CHECK(x->metrics[i].n == y->metrics[i].n);
    }
    REQUIRE(x->outcomes.size() == y->outcomes.size());
    for (size_t i = 0; i < x->outcomes.size(); ++i) {
      CHECK(x->outcomes[i].metric == y->outcomes[i].metric);
      REQUIRE(x->outcomes[i].values.size() == y->outcomes[i].values.size());
      CHECK(std::memcmp(x->outcomes[i].values.data(), y->outcomes[i].values.data(),
                        x->outcomes[i].values.size() * sizeof(double)) == 0);
    }
  }
}

}  // namespace ikv::exp::testing
