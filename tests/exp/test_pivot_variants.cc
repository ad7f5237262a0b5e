// Issue #23's variants in the config, the plan and the report: the keys and axes that choose them
// (keep_super_weights, scales: static, kv_quant, kv_protect, ci_baseline), one-line errors naming
// file:line:column, cells whose keys and labels say which variant they are (keys of configs
// without them unchanged), and CIs against IntactKV_[B] of the method without its extras.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "eval/stats.h"
#include "exp/config.h"
#include "exp/exp_fixtures.h"
#include "exp/plan.h"
#include "exp/report.h"
#include "io/error.h"

using namespace ikv::exp;
using ikv::exp::testing::config_error;
using ikv::exp::testing::fake_identities;

namespace {

const char* kBase = R"(
models: [{name: tiny, path: models/tiny}]
quantizers:
  - {method: rtn, wbits: 3, group: 128}
  - {method: rtn, wbits: 3, group: 128, keep_super_weights: true}
  - {method: quarot, wbits: 4, abits: 4, group: -1, scales: static, samples: 4, seq_len: 64}
kv_bits: [16, 4]
kv_quant: [per_token, {keys: per_channel_prerope, values: per_token, residual: 128}]
kv_protect: [none, sinks]
intactkv: [none, bos]
ci_baseline: bos
tasks: {ppl: {datasets: [wikitext2], ctx: 64, windows: 2}}
)";

}  // namespace

TEST_CASE("pivot variants: parsed, planned, keyed and labelled") {
  const ExperimentConfig c = parse_config(kBase, "t.yaml");
  CHECK(c.quantizers[1].keep_super_weights);
  CHECK(c.quantizers[2].static_scales());
  REQUIRE(c.kv_quant.size() == 2);
  CHECK(c.kv_quant[1].keys == "per_channel_prerope");
  CHECK(c.kv_quant[1].residual == 128);
  CHECK(c.kv_protect == std::vector<std::string>{"none", "sinks"});
  CHECK(c.ci_baseline == "bos");
  const Plan p = make_plan(c, fake_identities());
  // Per quantizer: kv16 (one scheme) + kv4 × {per_token, sinks, kivi} (KIVI is not paired with
  // sinks), each × 2 IntactKV variants.
  CHECK(p.cells.size() == 3 * (1 + 3) * 2);
  std::vector<std::string> labels;
  for (const Cell& cell : p.cells) labels.push_back(cell.quant_label());
  for (const char* l : {"rtn-w3g128", "rtn-w3g128-sinks", "rtn-w3g128-kivi128", "rtn-w3g128-sw", "rtn-w3g128-sw-kivi128",
                        "quarot-w4a4-static", "quarot-w4a4-static-sinks"})
    CHECK(std::count(labels.begin(), labels.end(), l) >= 2);
  CHECK(std::none_of(p.cells.begin(), p.cells.end(), [](const Cell& x) { return x.kv_bits == 16 && !x.kv.is_default(); }));
  // Static scales do not change the packed weights: the artifact is the dynamic quantizer's.
  ExperimentConfig dyn = c;
  dyn.quantizers = {c.quantizers[2]};
  dyn.quantizers[0].scales = "dynamic", dyn.quantizers[0].samples = 128, dyn.quantizers[0].seq_len = 2048;
  const Plan pd = make_plan(dyn, fake_identities());
  const auto st = std::find_if(p.cells.begin(), p.cells.end(), [](const Cell& x) { return x.quant.static_scales(); });
  CHECK(st->quant_key == pd.cells[0].quant_key);
  CHECK(st->key != pd.cells[0].key);
  // Keys of the default settings do not mention the new ones: stored cells stay found.
  const std::string plain = R"(
models: [{name: tiny, path: models/tiny}]
quantizers: [{method: rtn, wbits: 3, group: 128}]
kv_bits: [4]
tasks: {ppl: {datasets: [wikitext2], ctx: 64, windows: 2}}
)";
  const Plan a = make_plan(parse_config(plain, "t.yaml"), fake_identities());
  const Plan b = make_plan(parse_config(plain + "kv_quant: [per_token]\nkv_protect: [none]\n", "t.yaml"), fake_identities());
  CHECK(a.cells[0].key == b.cells[0].key);
  CHECK(a.cells[0].key == p.cells[2].key);  // kBase's rtn kv4 per_token none: the same cell
}

TEST_CASE("pivot variants: one-line errors name the place") {
  const std::string v = "models: [{path: models/m}]\ntasks: {ppl: {}}\n";
  CHECK(config_error(v + "quantizers: [{method: gptq, wbits: 3, keep_super_weights: true}]\n").find("t.yaml:3:") != std::string::npos);
  CHECK(config_error(v + "quantizers: [{method: rtn, wbits: 3, scales: fixed}]\n").find("scales must be dynamic or static") !=
        std::string::npos);
  CHECK(config_error(v + "kv_quant: [{keys: per_channel}]\n").find("t.yaml:3:") != std::string::npos);
  CHECK(config_error(v + "kv_quant: [{keys: per_token, residual: 4}]\n").find("residual and group apply") != std::string::npos);
  CHECK(config_error(v + "kv_quant: [per_head]\n").find("kv_quant must be per_token") != std::string::npos);
  CHECK(config_error(v + "kv_protect: [sink]\n").find("kv_protect must be none or sinks, got 'sink'") != std::string::npos);
  CHECK(config_error(v + "ci_baseline: cal\n").find("t.yaml:3:14: ci_baseline must be none or bos") != std::string::npos);
}

TEST_CASE("pivot variants: report labels and CIs against IntactKV_[B] of the base method") {
  CHECK(method_label("rtn-w3g128-sw", 16) == "RTN W3g128 (super weights kept)");
  CHECK(method_label("quarot-w4a4-static-kivi128", 4) == "QuaRot W4A4 (static scales, KIVI keys, residual 128) KV4");
  CHECK(method_label("fp-sinks", 4) == "FP (sink KV kept) KV4");
  CHECK(base_method("quarot-w4a4-static-kivi128") == "quarot-w4a4");
  CHECK(base_method("rtn-w3g128-sym-sw-sinks") == "rtn-w3g128-sym");
  CHECK(base_method("gptq-w3g128") == "gptq-w3g128");
  auto cell = [](const std::string& quant, const std::string& v, std::vector<double> nll) {
    CellRecord c;
    c.model = "m", c.quant = quant, c.kv_bits = 4, c.intactkv = v, c.task_kind = "ppl", c.task = "wikitext2";
    c.metrics.push_back({"ppl", 10, 0.1, 100});
    c.outcomes.push_back({"window_nll", std::move(nll)});
    return c;
  };
  const std::vector<CellRecord> cells = {cell("quarot-w4a4", "none", {5, 6, 7, 8}), cell("quarot-w4a4", "bos", {4, 5, 6, 7}),
                                         cell("quarot-w4a4-static", "bos", {3, 5, 5, 7}),
                                         cell("quarot-w4a4-kivi128", "none", {6, 6, 8, 8})};
  const auto cis = intactkv_vs_baseline(cells, 200, 3, "bos");
  REQUIRE(cis.size() == 3);  // every row but the baseline itself
  CHECK(cis[0].quant == "quarot-w4a4");
  CHECK(cis[0].diff == doctest::Approx(1.0));
  CHECK(cis[1].quant == "quarot-w4a4-static");
  CHECK(cis[1].diff == doctest::Approx(-0.5));
  CHECK(cis[2].diff == doctest::Approx(1.5));
  CHECK(intactkv_vs_baseline(cells, 200, 3).size() == 1);  // the default: IntactKV rows vs their own method
  ReportOptions o;
  o.ci_baseline = "bos";
  CHECK(render_report(cells, ReportFormat::Markdown, o).find("## Against IntactKV_[B] of the same method") != std::string::npos);
  // Sink counts of kv_protect: sinks cells get their own section.
  std::vector<CellRecord> with_sinks = cells;
  with_sinks.push_back(cell("quarot-w4a4-sinks", "none", {5, 6, 7, 8}));
  with_sinks.back().metrics.push_back({"sink_tokens_per_window", 1.25, NAN, 4});
  CHECK(render_report(with_sinks, ReportFormat::Markdown, o)
            .find("| m | QuaRot W4A4 (sink KV kept) KV4 | no IntactKV | wikitext2 | 1.25 | 4 |") != std::string::npos);
}
