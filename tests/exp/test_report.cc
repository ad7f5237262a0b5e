#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "eval/stats.h"
#include "exp/exp_fixtures.h"
#include "exp/quant_error.h"
#include "eval/tasks.h"
#include "exp/report.h"
#include "exp/report_plots.h"
#include "io/error.h"

using namespace ikv::exp;
using ikv::exp::testing::TempDir;

namespace {

CellRecord cell(const std::string& model, const std::string& quant, const std::string& intactkv,
                const std::string& kind, const std::string& task, double value) {
  CellRecord c;
  c.key = model + "/" + quant + "/" + intactkv + "/" + task;
  c.model = model, c.quant = quant, c.intactkv = intactkv, c.task_kind = kind, c.task = task;
  c.metrics.push_back({kind == "ppl" ? "ppl" : kind == "kld" ? "kld" : "acc", value, 0.01, 100});
  return c;
}

// A small hand-made run: FP, RTN W3g128 and two IntactKV variants; a kld cell stays out of the table.
std::vector<CellRecord> hand_made_run() {
  std::vector<CellRecord> cells;
  auto add = [&](const std::string& quant, const std::string& v, double ppl, double arc, double boolq) {
    cells.push_back(cell("m", quant, v, "ppl", "wikitext2", ppl));
    cells.push_back(cell("m", quant, v, "qa", "arc_easy", arc));
    cells.push_back(cell("m", quant, v, "qa", "boolq", boolq));
  };
  add("fp", "none", 5.0, 0.70, 0.80);
  add("rtn-w3g128", "none", 8.0, 0.60, 0.70);
  add("rtn-w3g128", "bos", 7.5, 0.65, 0.72);
  add("rtn-w3g128", "vicuna+cal", 7.0, 0.64, 0.75);
  cells.push_back(cell("m", "rtn-w3g128", "none", "kld", "kld", 0.25));
  return cells;
}

// The same through a real store, as `ikv-eval report` reads it.
std::vector<CellRecord> through_store(const std::vector<CellRecord>& cells, const TempDir& dir) {
  Store store(dir / "ikv.sqlite");
  const int64_t run = store.begin_run("t.yaml", "x", "test");
  for (const auto& c : cells) store.put_cell(c);
  store.add_run_cells(run, cells);
  return store.cells_of_run(run);
}

}  // namespace

TEST_CASE("report: labels in the paper's style") {
  CHECK(method_label("fp", 16) == "FP");
  CHECK(method_label("rtn-w3g128", 16) == "RTN W3g128");
  CHECK(method_label("quarot-w4a4", 4) == "QuaRot W4A4 KV4");
  CHECK(method_label("gptq-w3g128-sym-ao", 16) == "GPTQ W3g128 (sym, act-order)");
  CHECK(method_label("my-own-label", 16) == "my-own-label");
  CHECK(intactkv_row_label("none") == "");
  CHECK(intactkv_row_label("bos") == "+ IntactKV_[B]");
  CHECK(intactkv_row_label("vicuna") == "+ IntactKV_[P]");
  CHECK(intactkv_row_label("vicuna+cal") == "+ IntactKV_[P] (calibrated)");
  CHECK(intactkv_row_label("bos+cal") == "+ IntactKV_[B] (calibrated)");
  CHECK(parse_report_format("md") == ReportFormat::Markdown);
  CHECK(parse_report_format("html") == ReportFormat::Html);
  CHECK_THROWS_WITH_AS(parse_report_format("pdf"),
                       "unknown report format 'pdf'; expected md, csv, json or html", ikv::Error);
}

// The hand-made run has two QA tasks, averaged when the config declares them (qa: {average: ...}).
const std::vector<std::string> kTwoTasks = {"arc_easy", "boolq"};

TEST_CASE("report: markdown table with the best per column in bold") {
  TempDir dir;
  ReportOptions o;
  o.bootstrap_resamples = 0;
  o.qa_average = kTwoTasks;
  const std::string full = render_report(through_store(hand_made_run(), dir), ReportFormat::Markdown, o);
  // The table and its legend; the wall time of each cell follows (provenance_markdown).
  const std::string md = full.substr(0, full.find("\n## Wall time per cell"));
  CHECK(full.find("\n## Wall time per cell\n\n| Cell | s |\n|---|---:|\n| m · FP · wikitext2 | 0.0 |\n") !=
        std::string::npos);
  CHECK(md ==
        "# IntactKV results\n"
        "\n"
        "| Method | wikitext2 | arc_easy | boolq | Avg |\n"
        "|---|---:|---:|---:|---:|\n"
        "| FP | 5.00 | 70.00 | 80.00 | 75.00 |\n"
        "| RTN W3g128 | 8.00 | 60.00 | 70.00 | 65.00 |\n"
        "| + IntactKV_[B] | 7.50 | **65.00** | 72.00 | 68.50 |\n"
        "| + IntactKV_[P] (calibrated) | **7.00** | 64.00 | **75.00** | **69.50** |\n"
        "\n"
        "PPL for wikitext2 (lower is better). Accuracy in % (higher is better): acc for arc_easy, boolq. Avg: "
        "mean of arc_easy, boolq. IntactKV_[P] rows on QA/MMLU are beyond the paper (it uses the system prompt "
        "only for MT-bench). Bold: best among quantized rows.\n");
}

TEST_CASE("report: several models become column groups; a missing cell is a dash") {
  std::vector<CellRecord> cells = hand_made_run();
  cells.push_back(cell("big", "rtn-w3g128", "none", "ppl", "wikitext2", 6.0));
  cells.push_back(cell("big", "rtn-w3g128", "bos", "ppl", "wikitext2", 6.5));
  cells.push_back(cell("m", "rtn-w3g128", "none", "mmlu", "mmlu", 0.3));
  ReportOptions o;
  o.bootstrap_resamples = 0;
  o.qa_average = kTwoTasks;
  const std::string md = render_report(cells, ReportFormat::Markdown, o);
  CHECK(md.find("| Method | m wikitext2 | m arc_easy | m boolq | m Avg | m mmlu | big wikitext2 | big "
                "arc_easy | big boolq | big Avg | big mmlu |\n") != std::string::npos);
  CHECK(md.find("| FP | 5.00 | 70.00 | 80.00 | 75.00 | - | - | - | - | - | - |\n") != std::string::npos);
  CHECK(md.find("| RTN W3g128 | 8.00 | 60.00 | 70.00 | 65.00 | 30.00 | **6.00** | - | - | - | - |\n") !=
        std::string::npos);
}

TEST_CASE("report: csv") {
  ReportOptions o;
  o.qa_average = kTwoTasks;
  o.provenance = {{"ikv build", "v1"}};
  const std::string with_comments = render_report(hand_made_run(), ReportFormat::Csv, o);
  // Provenance and wall times first, as comment lines; then the table.
  CHECK(with_comments.starts_with("# ikv build: v1\n# seconds: m · FP · wikitext2: 0.0\n"));
  const std::string csv = with_comments.substr(with_comments.find("method,"));
  CHECK(csv ==
        "method,m/wikitext2,m/arc_easy,m/boolq,m/Avg\n"
        "FP,5.0000,70.0000,80.0000,75.0000\n"
        "RTN W3g128,8.0000,60.0000,70.0000,65.0000\n"
        "+ IntactKV_[B],7.5000,65.0000,72.0000,68.5000\n"
        "+ IntactKV_[P] (calibrated),7.0000,64.0000,75.0000,69.5000\n");
}

TEST_CASE("report: json is the flat list compare reads") {
  std::vector<CellRecord> cells = hand_made_run();
  cells[0].metrics[0].std_err = std::nan("");
  const nlohmann::json doc = nlohmann::json::parse(render_report(cells, ReportFormat::Json));
  CHECK(doc["provenance"] == nlohmann::json::object());  // none given
  const nlohmann::json& j = doc["results"];
  REQUIRE(j.is_array());
  CHECK(j.size() == 13);  // every metric of every cell, kld included
  CHECK(j[0] == nlohmann::json{{"model", "m"},
                               {"quant", "fp"},
                               {"kv_bits", 16},
                               {"intactkv", "none"},
                               {"task_kind", "ppl"},
                               {"task", "wikitext2"},
                               {"metric", "ppl"},
                               {"value", 5.0},
                               {"stderr", nullptr},
                               {"n", 100},
                               {"seconds", 0.0}});
  CHECK(j[12]["metric"] == "kld");
}

TEST_CASE("report: self-contained html with bold best and embedded fragments") {
  ReportOptions o;
  o.title = "Run <1>";
  o.html_fragments = {"<svg id=\"plot-1\"></svg>"};
  o.bootstrap_resamples = 0;
  o.qa_average = kTwoTasks;
  const std::string html = render_report(hand_made_run(), ReportFormat::Html, o);
  CHECK(
      html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Run "
                       "&lt;1&gt;</title>\n<style>"));
  CHECK(html.find("<tr><th rowspan=\"2\">Method</th><th colspan=\"4\">m</th></tr>\n"
                  "<tr><th>wikitext2</th><th>arc_easy</th><th>boolq</th><th>Avg</th></tr>") !=
        std::string::npos);
  CHECK(
      html.find("<tr><td class=\"variant\">+ IntactKV_[P] (calibrated)</td><td><b>7.00</b></td><td>64.00</td>"
                "<td><b>75.00</b></td><td><b>69.50</b></td></tr>") != std::string::npos);
  CHECK(html.find("<tr><td>FP</td><td>5.00</td>") != std::string::npos);
  CHECK(html.find("<div class=\"figure\">\n<svg id=\"plot-1\"></svg>\n</div>") != std::string::npos);
  CHECK(html.find("<link") == std::string::npos);  // nothing fetched from elsewhere
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.ends_with("</body>\n</html>\n"));
}

TEST_CASE("report: paired bootstrap CI of IntactKV vs its baseline") {
  std::vector<CellRecord> cells = hand_made_run();
  // Per-item outcomes for arc_easy: the baseline (index 4) and the bos variant (index 7).
  std::vector<double> base(100), bos(100), cal(100);
  for (int i = 0; i < 100; ++i) {
    base[i] = i % 10 < 6;
    bos[i] = i % 20 < 13;
    cal[i] = base[i];
  }
  cells[4].outcomes = {{"acc", base}};
  cells[7].outcomes = {{"acc", bos}};
  cells[10].outcomes = {{"acc", cal}};  // identical to the baseline: a zero-width interval at 0
  const auto cis = intactkv_vs_baseline(cells, 500, 7);
  REQUIRE(cis.size() == 2);
  CHECK(cis[0].intactkv == "bos");
  CHECK(cis[0].task == "arc_easy");
  CHECK(cis[0].n == 100);
  const auto expected = ikv::eval::paired_bootstrap(base, bos, 500, 7);
  CHECK(cis[0].diff == doctest::Approx(0.05));
  CHECK(cis[0].lo == expected.lo);
  CHECK(cis[0].hi == expected.hi);
  CHECK(cis[0].lo < 0.05);
  CHECK(cis[0].hi > 0.05);
  CHECK(cis[1].diff == 0);
  CHECK(cis[1].lo == 0);
  CHECK(cis[1].hi == 0);

  ReportOptions o;
  o.bootstrap_resamples = 500;
  o.seed = 7;
  const std::string md = render_report(cells, ReportFormat::Markdown, o);
  CHECK(md.find("## IntactKV vs baseline (paired bootstrap, 95% CI)\n") != std::string::npos);
  CHECK(md.find("| m | RTN W3g128 | + IntactKV_[P] (calibrated) | arc_easy | acc | 100 | +0.0000 | [+0.0000, "
                "+0.0000] |\n") != std::string::npos);
}

TEST_CASE("report: each QA column shows its task's paper metric; Avg is over the declared tasks") {
  // Two tasks with acc and acc_norm; arc_challenge's table metric is acc_norm.
  std::vector<CellRecord> cells;
  for (const auto& [quant, v, easy, chal] :
       std::vector<std::tuple<std::string, std::string, double, double>>{{"fp", "none", 0.70, 0.40},
                                                                        {"rtn-w3g128", "none", 0.60, 0.30},
                                                                        {"rtn-w3g128", "vicuna", 0.62, 0.33}}) {
    CellRecord e = cell("m", quant, v, "qa", "arc_easy", easy);
    e.metrics.push_back({"acc_norm", easy - 0.05, 0.01, 100});
    CellRecord c = cell("m", quant, v, "qa", "arc_challenge", chal - 0.10);  // acc
    c.metrics.push_back({"acc_norm", chal, 0.01, 100});
    cells.push_back(e), cells.push_back(c);
  }
  ReportOptions o;
  o.bootstrap_resamples = 0;
  // By default Avg is the paper's seven tasks: not all ran, so no Avg column.
  const ReportTable paper = build_report_table(cells);
  REQUIRE(paper.columns.size() == 2);
  CHECK(paper.columns[1].metric == "acc_norm");
  CHECK(*paper.rows[0].values[1] == doctest::Approx(40.0));  // acc_norm, not acc (30)
  std::string md = render_report(cells, ReportFormat::Markdown, o);
  CHECK(md.find("| Method | arc_easy | arc_challenge (acc_norm) |\n") != std::string::npos);
  CHECK(md.find("Accuracy in % (higher is better): acc for arc_easy; acc_norm for arc_challenge.") !=
        std::string::npos);
  CHECK(md.find("Avg") == std::string::npos);
  // IntactKV_[P] on QA is flagged as beyond the paper.
  CHECK(md.find("IntactKV_[P] rows on QA/MMLU are beyond the paper") != std::string::npos);
  // Declared: Avg over exactly those tasks, each by its metric, named in the legend.
  o.qa_average = {"arc_easy", "arc_challenge"};
  md = render_report(cells, ReportFormat::Markdown, o);
  CHECK(md.find("| FP | 70.00 | 40.00 | 55.00 |\n") != std::string::npos);
  CHECK(md.find("Avg: mean of arc_easy, arc_challenge.") != std::string::npos);
  // The paper's suite, with every task present: Avg and "(the paper's zero-shot suite)".
  std::vector<CellRecord> seven;
  for (const auto& t : ikv::eval::paper_qa_tasks()) seven.push_back(cell("m", "fp", "none", "qa", t, 0.5));
  for (auto& c : seven) c.metrics.push_back({"acc_norm", 0.5, 0.01, 100});
  const std::string all = render_report(seven, ReportFormat::Markdown, ReportOptions{});
  CHECK(all.find("| Avg |") != std::string::npos);
  CHECK(all.find("(the paper's zero-shot suite)") != std::string::npos);
  CHECK(all.find("hellaswag: the bundled llama.cpp conversion") != std::string::npos);
}

TEST_CASE("report: the Avg a run declared travels with it in the store") {
  TempDir dir;
  Store store(dir / "ikv.sqlite");
  const int64_t run = store.begin_run("t.yaml", "x", "test");
  store.set_run_option(run, "qa_average", "arc_easy,piqa");
  CHECK(stored_report_options(store.run_options(run)).qa_average == std::vector<std::string>{"arc_easy", "piqa"});
  CHECK(stored_report_options(store.run_options(run + 1)).qa_average.empty());
}

TEST_CASE("report: provenance from the store, in every format, escaped") {
  TempDir dir;
  Store store(dir / "ikv.sqlite");
  const int64_t run = store.begin_run("configs/x.yaml", std::string(64, 'a'), "ikv-0.1.0");
  store.set_run_option(run, "build", "v0.1-2-gabc<dirty>");
  store.set_run_option(run, "threads", "2");
  store.set_run_option(run, "dtype:m", "bf16");
  store.set_run_option(run, "data:wikitext2", std::string(64, 'b'));
  store.set_run_option(run, "model:m", std::string(64, 'c'));
  const auto info = store.get_run(run);
  const ReportOptions o = stored_report_options(store.run_options(run), &*info);
  auto value = [&](const std::string& what) {
    for (const auto& [w, v] : o.provenance)
      if (w == what) return v;
    return std::string("(absent)");
  };
  CHECK(o.provenance.front().first == "ikv build");
  CHECK(value("config") == "configs/x.yaml");
  CHECK(value("config sha256") == std::string(64, 'a'));
  CHECK(value("threads") == "2");
  CHECK(value("dtype m") == "bf16");
  CHECK(value("data wikitext2") == std::string(64, 'b'));
  CHECK(value("model m") == std::string(64, 'c'));
  CHECK(value("cores") != "(absent)");
  const std::vector<CellRecord> cells = hand_made_run();
  const std::string md = render_report(cells, ReportFormat::Markdown, o);
  CHECK(md.find("## Provenance\n\n| | |\n|---|---|\n| ikv build | v0.1-2-gabc&lt;dirty&gt; |\n") != std::string::npos);
  const std::string html = render_report(cells, ReportFormat::Html, o);
  CHECK(html.find("<tr><th>ikv build</th><td>v0.1-2-gabc&lt;dirty&gt;</td></tr>") != std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(render_report(cells, ReportFormat::Json, o));
  CHECK(j["provenance"]["data wikitext2"] == std::string(64, 'b'));
  CHECK(j["results"].size() == 13);
}

TEST_CASE("report figures: the change IntactKV makes, with its CI, one chart per task with comparisons") {
  std::vector<CellRecord> cells = hand_made_run();
  std::vector<double> base(100), bos(100);
  for (int i = 0; i < 100; ++i) base[i] = i % 10 < 6, bos[i] = i % 20 < 13;
  cells[4].outcomes = {{"acc", base}};  // arc_easy, RTN
  cells[7].outcomes = {{"acc", bos}};   // arc_easy, RTN + IntactKV_[B]
  // wikitext2: 4 windows of 100 tokens each, the variant 1 nat lower per window.
  cells[3].outcomes = {{"window_nll", {300, 310, 290, 305}}};
  cells[3].metrics[0].n = 400;
  cells[6].outcomes = {{"window_nll", {299, 309, 289, 304}}};
  const std::vector<std::string> figs = report_figures(cells);
  int deltas = 0;
  for (const auto& f : figs) deltas += f.find("IntactKV vs the same method without it") != std::string::npos;
  CHECK(deltas == 2);  // wikitext2 and arc_easy; boolq has no per-item outcomes
  CHECK(std::any_of(figs.begin(), figs.end(), [](const std::string& f) {
    return f.find("<svg") != std::string::npos &&
           f.find("m — wikitext2: IntactKV vs the same method without it") != std::string::npos;
  }));
  // A run without IntactKV variants has nothing to compare: no such figure.
  std::vector<CellRecord> fp_only = {cells[0], cells[1]};
  CHECK(report_figures(fp_only).empty());
}

TEST_CASE("report: quant_error cells make a table per model and setting, RTN first as the baseline") {
  auto qe = [](const std::string& quant, std::vector<double> errors) {
    CellRecord c = cell("m", quant, "none", "quant_error", "quant_error", 0);
    c.metrics.clear();
    double mean = 0;
    for (double e : errors) mean += e / static_cast<double>(errors.size());
    c.metrics.push_back({"error_mean", mean, NAN, 512});
    const char* linears[] = {"0.q_proj", "0.k_proj", "1.down_proj"};
    for (size_t i = 0; i < errors.size(); ++i) c.metrics.push_back({std::string("error@") + linears[i], errors[i], NAN, 512});
    return c;
  };
  std::vector<CellRecord> cells = hand_made_run();
  cells.push_back(qe("gptq-w3g128-ao", {0.10, 0.30, 0.05}));
  cells.push_back(qe("rtn-w3g128", {0.20, 0.20, 0.10}));
  cells.push_back(qe("rtn-w4g128", {0.05, 0.06, 0.04}));
  TempDir dir;
  const std::vector<CellRecord> stored = through_store(cells, dir);
  const std::vector<QuantErrorTable> tables = quant_error_tables(stored);
  REQUIRE(tables.size() == 2);
  CHECK(tables[0].title == "m, w3g128");
  CHECK(markdown_rows(tables[0].rows) ==
        "| layer | linear | RTN W3g128 | GPTQ W3g128 (act-order) |\n|---|---|---:|---:|\n"
        "| 0 | q_proj | 0.2000 | 0.1000 |\n| 0 | k_proj | 0.2000 | 0.3000 † |\n| 1 | down_proj | 0.1000 | 0.0500 |\n"
        "| | **mean** | 0.1667 | 0.1500 |\n| | **below RTN on every linear** | – | **no** (2/3) |\n");
  CHECK(tables[1].title == "m, w4g128");
  CHECK(tables[1].rows.size() == 6);  // header, 3 linears, mean, below RTN (its own baseline)
  const std::string md = render_report(stored, ReportFormat::Markdown);
  CHECK(md.find("## Layer reconstruction error: m, w3g128") != std::string::npos);
  CHECK(md.find("| RTN W3g128 |") != std::string::npos);  // the paper table is still there
  const std::string html = render_report(stored, ReportFormat::Html);
  CHECK(html.find("<td><b>no</b> (2/3)</td>") != std::string::npos);
  CHECK(report_json(stored).size() == 13 + 3 * 4);  // every metric of every cell
  // Without an RTN cell of its setting a table has no baseline: no marks, no count.
  const std::vector<QuantErrorTable> alone = quant_error_tables({qe("awq-w3g128", {0.1, 0.2, 0.3})});
  REQUIRE(alone.size() == 1);
  CHECK(alone[0].rows.size() == 5);
}
