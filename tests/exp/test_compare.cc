#include <doctest/doctest.h>

#include "exp/compare.h"
#include "io/error.h"

using namespace ikv::exp;
using nlohmann::json;

namespace {

json entry(const std::string& task, const std::string& metric, double value) {
  return {{"model", "m"},
          {"quant", "rtn-w3g128"},
          {"kv_bits", 16},
          {"intactkv", "bos"},
          {"task_kind", metric == "ppl" ? "ppl" : "qa"},
          {"task", task},
          {"metric", metric},
          {"value", value}};
}

json baseline() {
  return json::array({entry("wikitext2", "ppl", 10.0), entry("ptb", "ppl", 20.0),
                      entry("arc_easy", "acc", 0.60), entry("boolq", "acc", 0.70)});
}

const CompareRow& row_of(const CompareResult& r, const std::string& task) {
  for (const auto& row : r.rows)
    if (row.task == task) return row;
  FAIL("no row for " << task);
  return r.rows.front();
}

}  // namespace

TEST_CASE("compare: identical reports pass") {
  const CompareResult r = compare(baseline(), baseline());
  CHECK(r.ok);
  CHECK(r.rows.size() == 4);
  CHECK(r.count(CompareStatus::Ok) == 4);
}

TEST_CASE("compare: a report with provenance ({provenance, results}) against a plain-list baseline") {
  const json report = {{"provenance", {{"ikv build", "v1"}}}, {"results", baseline()}};
  const CompareResult r = compare(report, baseline());
  CHECK(r.ok);
  CHECK(r.rows.size() == 4);
  CHECK_THROWS_WITH_AS(compare(json{{"provenance", json::object()}}, baseline()),
                       doctest::Contains("not a JSON list"), ikv::Error);
}

TEST_CASE("compare: an altered metric is flagged, a small change is not") {
  json current = baseline();
  current[0]["value"] = 10.04;  // +0.4%: within ppl_rel 0.5%
  current[1]["value"] = 20.2;   // +1%: worse
  current[2]["value"] = 0.605;  // +0.5 points: within 1 point
  current[3]["value"] = 0.68;   // -2 points: worse
  const CompareResult r = compare(current, baseline());
  CHECK(!r.ok);
  CHECK(row_of(r, "wikitext2").status == CompareStatus::Ok);
  CHECK(row_of(r, "ptb").status == CompareStatus::Regressed);
  CHECK(row_of(r, "ptb").delta == doctest::Approx(0.2));
  CHECK(row_of(r, "ptb").tolerance == "±0.5%");
  CHECK(row_of(r, "arc_easy").status == CompareStatus::Ok);
  CHECK(row_of(r, "boolq").status == CompareStatus::Regressed);
  CHECK(row_of(r, "boolq").tolerance == "±1 pt");

  const std::string table = render_compare(r);
  CHECK(
      table.find(
          "| m | rtn-w3g128 | 16 | bos | ptb | ppl | 20.0000 | 20.2000 | +0.2000 | ±0.5% | REGRESSED |\n") !=
      std::string::npos);
  CHECK(table.find(
            "| m | rtn-w3g128 | 16 | bos | wikitext2 | ppl | 10.0000 | 10.0400 | +0.0400 | ±0.5% | OK |\n") !=
        std::string::npos);
  CHECK(table.ends_with("FAILED: 2 ok, 2 regressed, 0 improved, 0 missing, 0 new\n"));

  // Custom tolerances.
  CHECK(compare(current, baseline(), Tolerances{0.02, 3.0}).ok);
}

TEST_CASE("compare: improvements beyond tolerance, missing and new metrics") {
  json current = baseline();
  current[2]["value"] = 0.65;  // +5 points: better, but not what the baseline says
  current.erase(3);            // boolq gone
  current.push_back(entry("piqa", "acc", 0.7));
  const CompareResult r = compare(current, baseline());
  CHECK(!r.ok);
  CHECK(row_of(r, "arc_easy").status == CompareStatus::Improved);
  CHECK(row_of(r, "boolq").status == CompareStatus::Missing);
  CHECK(row_of(r, "piqa").status == CompareStatus::New);
  CHECK(r.rows.back().task == "piqa");

  // Only new metrics: still ok.
  json more = baseline();
  more.push_back(entry("piqa", "acc", 0.7));
  CHECK(compare(more, baseline()).ok);
  // A value that became null (NaN when written) regresses.
  json nulled = baseline();
  nulled[0]["value"] = nullptr;
  CHECK(row_of(compare(nulled, baseline()), "wikitext2").status == CompareStatus::Regressed);
}

TEST_CASE("compare: malformed reports are errors") {
  CHECK_THROWS_WITH_AS(compare(json::object(), baseline()), "compare: current report is not a JSON list",
                       ikv::Error);
  json bad = baseline();
  bad[1].erase("metric");
  CHECK_THROWS_WITH_AS(compare(baseline(), bad), "compare: baseline report: entry 1 has no string \"metric\"",
                       ikv::Error);
  json twice = baseline();
  twice.push_back(twice[0]);
  CHECK_THROWS_WITH_AS(compare(twice, baseline()),
                       "compare: current report: entry 4 repeats an earlier entry", ikv::Error);
}
