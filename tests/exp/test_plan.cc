#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <set>

#include "exp/exp_fixtures.h"
#include "exp/plan.h"
#include "io/error.h"

using namespace ikv::exp;
using ikv::exp::testing::fake_identities;

namespace {

const char* kMatrix = R"(
models: [{name: tiny, path: models/tiny}]
quantizers: [fp, {method: rtn, wbits: 3, group: 128}]
kv_bits: [16]
intactkv: [none, bos]
tasks:
  ppl: {datasets: [wikitext2, ptb], ctx: 64, windows: 2}
  qa: {tasks: [arc_easy, boolq], limit: 10}
  mmlu: {shots: 5, limit: 2}
  kld: {ctx: 64, windows: 2}
  mse_sweep: {max_size: 4, samples: 2}
)";

Plan plan_of(const std::string& yaml, const Identities& ids = fake_identities()) {
  return make_plan(parse_config(yaml, "t.yaml"), ids);
}

size_t count_if(const Plan& p, const std::function<bool(const Cell&)>& pred) {
  return static_cast<size_t>(std::count_if(p.cells.begin(), p.cells.end(), pred));
}

// One cell: every deciding input is a line of this config.
const char* kOneCell = R"(
seed: 0
models: [{name: tiny, path: models/tiny, dtype: fp32}]
quantizers: [{method: gptq, wbits: 3, group: 128, samples: 16, seq_len: 64, data: sharegpt}]
kv_bits: [16]
intactkv: [{calibrated: {prefix: vicuna, samples: 4, epochs: 2, lr: 2.0e-4, data: sharegpt, max_len: 64}}]
tasks: {ppl: {datasets: [wikitext2], ctx: 64, windows: 2}}
)";

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

std::string only_key(const Plan& p) {
  REQUIRE(p.cells.size() == 1);
  return p.cells[0].key;
}

}  // namespace

TEST_CASE("plan: expansion counts and skip rules") {
  const Plan p = plan_of(kMatrix);
  // fp/kv16: one variant (none) x 5 units (2 ppl, 2 qa, mmlu; kld skipped) = 5.
  // rtn/kv16: 2 variants x 6 units + 1 mse_sweep = 13.
  CHECK(p.cells.size() == 18);
  CHECK(count_if(p, [](const Cell& c) {
          return c.quant.is_fp() && c.intactkv.kind != IntactKVSpec::Kind::None;
        }) == 0);
  CHECK(count_if(p, [](const Cell& c) { return c.quant.is_fp() && task_kind(c.task) == "kld"; }) == 0);
  CHECK(count_if(p, [](const Cell& c) { return task_kind(c.task) == "mse_sweep"; }) == 1);
  CHECK(count_if(p, [](const Cell& c) { return task_kind(c.task) == "mmlu"; }) == 3);
  for (size_t i = 0; i < p.cells.size(); ++i) CHECK(p.cells[i].index == i);
  CHECK(p.cells[0].describe() == "tiny fp kv16 none wikitext2");
  CHECK(p.cells.back().describe() == "tiny rtn-w3g128 kv16 none mse_sweep");

  // A quantized KV cache makes IntactKV matter even for fp weights: fp/kv4 gets every variant.
  const Plan kv = plan_of(replaced(kMatrix, "kv_bits: [16]", "kv_bits: [16, 4]"));
  CHECK(kv.cells.size() == 5 + 13 + 13 + 13);
  CHECK(count_if(kv, [](const Cell& c) {
          return c.quant.is_fp() && c.kv_bits == 4 && c.intactkv.kind == IntactKVSpec::Kind::Bos;
        }) == 6);

  // Two models double everything; a quantizer listed twice adds nothing.
  const Plan two =
      plan_of(replaced(kMatrix, "models: [{name: tiny, path: models/tiny}]",
                       "models: [{name: tiny, path: models/tiny}, {name: other, path: models/other}]"));
  CHECK(two.cells.size() == 36);
  const Plan dup = plan_of(replaced(kMatrix, "quantizers: [fp,", "quantizers: [fp, fp,"));
  CHECK(dup.cells.size() == 18);
}

TEST_CASE("plan: keys are stable and distinct") {
  const Plan a = plan_of(kMatrix), b = plan_of(kMatrix);
  std::set<std::string> keys;
  for (size_t i = 0; i < a.cells.size(); ++i) {
    CHECK(a.cells[i].key == b.cells[i].key);
    CHECK(a.cells[i].key.size() == 64);
    keys.insert(a.cells[i].key);
  }
  CHECK(keys.size() == a.cells.size());
  // Pinned: if this changes, results stored by earlier builds will no longer be found. That is
  // right only together with a deliberate kEngineVersion bump (then update the value here).
  CHECK(std::string(kEngineVersion) == "ikv-0.1.0");
  CHECK(a.cells[0].key == "315936af09491a6d9e8ca053925bfa65ae1ae61341280b309cb27c5f518a8c40");
}

TEST_CASE("plan: every deciding input changes the key, labels do not") {
  const std::string base = only_key(plan_of(kOneCell));
  const std::vector<std::pair<std::string, std::string>> deciding = {
      {"seed: 0", "seed: 1"},
      {"dtype: fp32", "dtype: bf16"},
      {"wbits: 3", "wbits: 4"},
      {"group: 128", "group: 64"},
      {"samples: 16", "samples: 32"},
      {"seq_len: 64, data: sharegpt}", "seq_len: 128, data: sharegpt}"},
      {"kv_bits: [16]", "kv_bits: [8]"},
      {"lr: 2.0e-4", "lr: 1.0e-4"},
      {"epochs: 2", "epochs: 3"},
      {"prefix: vicuna", "prefix: bos"},
      {"ctx: 64, windows: 2}}", "ctx: 128, windows: 2}}"},
      {"windows: 2}}", "windows: 3}}"},
      {"datasets: [wikitext2]", "datasets: [ptb]"},
      {"path: models/tiny", "path: models/other"},  // another fingerprint
  };
  for (const auto& [from, to] : deciding) {
    CAPTURE(to);
    CHECK(only_key(plan_of(replaced(kOneCell, from, to))) != base);
  }
  // Identities supplied by the caller: a changed dataset checksum or model fingerprint.
  Identities ids = fake_identities();
  ids.dataset = [](const std::string& d) { return d == "wikitext2" ? "changed" : "sum-of-" + d; };
  CHECK(only_key(plan_of(kOneCell, ids)) != base);
  ids = fake_identities();
  ids.model = [](const ModelSpec&) { return "retrained"; };
  CHECK(only_key(plan_of(kOneCell, ids)) != base);

  const std::vector<std::pair<std::string, std::string>> labels_only = {
      {"name: tiny", "name: renamed"},
      {"seed: 0", "seed: 0\nthreads: 3\ndata_root: /elsewhere"},
      {"{method: gptq,", "{label: mine, method: gptq,"},
  };
  for (const auto& [from, to] : labels_only) {
    CAPTURE(to);
    CHECK(only_key(plan_of(replaced(kOneCell, from, to))) == base);
  }
}

TEST_CASE("plan: artifact keys are shared where the artifact is") {
  const Plan p =
      plan_of(replaced(replaced(kMatrix, "kv_bits: [16]", "kv_bits: [16, 4]"), "intactkv: [none, bos]",
                       "intactkv: [none, bos, {calibrated: {samples: 2, epochs: 1}}]"));
  std::set<std::string> rtn_quant_keys, bos_keys, calibrated_keys;
  for (const auto& c : p.cells) {
    if (c.quant.is_fp())
      CHECK(c.quant_key.empty());
    else
      rtn_quant_keys.insert(c.quant_key);
    if (c.intactkv.kind == IntactKVSpec::Kind::None) CHECK(c.intactkv_key.empty());
    if (c.intactkv.kind == IntactKVSpec::Kind::Bos) bos_keys.insert(c.intactkv_key);
    if (c.intactkv.kind == IntactKVSpec::Kind::Calibrated) calibrated_keys.insert(c.intactkv_key);
  }
  CHECK(rtn_quant_keys.size() == 1);   // one packed model for all its cells
  CHECK(bos_keys.size() == 1);         // the FP model's <bos> KV, whatever the quantizer
  CHECK(calibrated_keys.size() == 3);  // trained per (quantizer, kv_bits): fp/kv4, rtn/kv16, rtn/kv4

  // RTN draws no samples: its artifact ignores the seed; GPTQ's does not.
  const Identities ids = fake_identities();
  const ModelSpec m{"tiny", "models/tiny", "fp32", ""};
  QuantizerSpec rtn;
  rtn.method = "rtn", rtn.wbits = 3;
  QuantizerSpec gptq = rtn;
  gptq.method = "gptq";
  CHECK(quant_artifact_key(m, rtn, ids, 0) == quant_artifact_key(m, rtn, ids, 1));
  CHECK(quant_artifact_key(m, gptq, ids, 0) != quant_artifact_key(m, gptq, ids, 1));
  CHECK(quant_artifact_key(m, gptq, ids, 0) != quant_artifact_key(m, rtn, ids, 0));
}

TEST_CASE("plan: identities are required, asked once, and file hashes are used") {
  int model_calls = 0;
  Identities ids = fake_identities();
  ids.model = [&](const ModelSpec& m) { return ++model_calls, "fp-" + m.path; };
  plan_of(kMatrix, ids);
  CHECK(model_calls == 1);

  ids.model = nullptr;
  CHECK_THROWS_WITH_AS(plan_of(kMatrix, ids), "plan: no model fingerprint source for \"tiny\"", ikv::Error);

  const std::string with_file =
      replaced(kOneCell, "intactkv: [{calibrated:", "intactkv: [{file: p.ikv.safetensors}, {calibrated:");
  ids = fake_identities();
  const std::string k1 = plan_of(with_file, ids).cells[0].key;
  ids.file = [](const std::string&) { return "other-bytes"; };
  CHECK(plan_of(with_file, ids).cells[0].key != k1);
  ids.file = nullptr;
  CHECK_THROWS_WITH_AS(plan_of(with_file, ids),
                       "plan: no IntactKV file checksum source for \"p.ikv.safetensors\"", ikv::Error);
}

TEST_CASE("plan: dry-run table") {
  const Plan p = plan_of(kMatrix);
  const std::string table = render_plan(p);
  CHECK(table.starts_with(" #  model  quant       kv  intactkv  task       key             est\n"));
  CHECK(table.find("\n 1  tiny   fp          16  none      wikitext2  " + p.cells[0].key.substr(0, 12) +
                   "    128\n") != std::string::npos);
  CHECK(table.find("\n18  tiny   rtn-w3g128  16  none      mse_sweep  " + p.cells[17].key.substr(0, 12) +
                   "   4.1k\n") != std::string::npos);
  CHECK(table.find("18 cells, est ") != std::string::npos);
  const std::string with_status = render_plan(
      p, [](const Cell&) { return 1000.0; }, [&](const std::string& key) { return key == p.cells[0].key; });
  CHECK(with_status.find("1.0k  done\n") != std::string::npos);
  CHECK(with_status.ends_with("18 cells, est 18.0k; 1 done, 17 to run (est 17.0k)\n"));
}

TEST_CASE("plan: bos and MMLU format enter labels and keys only when they leave the default") {
  const Plan a = make_plan(parse_config("models: [{path: models/m}]\ntasks: {qa: {tasks: [boolq]}, mmlu: {}}\n", "t.yaml"),
                           ikv::exp::testing::fake_identities());
  const Plan b = make_plan(parse_config("models: [{path: models/m}]\ntasks: {qa: {tasks: [boolq], bos: never}, "
                                        "mmlu: {bos: never, format: lm-eval}}\n",
                                        "t.yaml"),
                           ikv::exp::testing::fake_identities());
  REQUIRE(a.cells.size() == 2);
  REQUIRE(b.cells.size() == 2);
  CHECK(task_label(a.cells[0].task) == "boolq");
  CHECK(task_label(b.cells[0].task) == "boolq/no-bos");
  CHECK(task_label(a.cells[1].task) == "mmlu");
  CHECK(task_label(b.cells[1].task) == "mmlu/no-bos/lm-eval");
  CHECK(a.cells[0].key != b.cells[0].key);
  CHECK(a.cells[1].key != b.cells[1].key);
}

TEST_CASE("plan: quant_error is one cell per model and rtn/gptq/awq quantizer, after its other cells") {
  const std::string yaml = R"(
models: [{name: tiny, path: models/tiny}]
quantizers: [fp, {method: rtn, wbits: 3}, {method: quarot, wbits: 4}, {method: awq, wbits: 3, samples: 4}]
kv_bits: [16, 4]
intactkv: [none, bos]
tasks:
  ppl: {datasets: [wikitext2], ctx: 64, windows: 2}
  quant_error: {tokens: 512, ctx: 128}
)";
  const Plan p = plan_of(yaml);
  std::vector<std::string> qe;
  for (const Cell& c : p.cells)
    if (task_kind(c.task) == "quant_error") {
      qe.push_back(c.describe());
      CHECK(c.quant_key.empty());  // it quantizes on its own: no artifact
      CHECK(c.intactkv_key.empty());
      CHECK(p.cells[c.index - 1].quant.method == c.quant.method);  // after the quantizer's cells
      CHECK((c.index + 1 == p.cells.size() || p.cells[c.index + 1].quant.method != c.quant.method));
    }
  CHECK(qe == std::vector<std::string>{"tiny rtn-w3g128 kv16 none quant_error", "tiny awq-w3g128 kv16 none quant_error"});
  CHECK(task_label(p.cells.back().task) == "quant_error");
  // Its key holds the held-out text, tokens and ctx, the quantizer (calibration included) and the seed.
  const std::string key = p.cells.back().key;
  CHECK(plan_of(replaced(yaml, "tokens: 512", "tokens: 256")).cells.back().key != key);
  CHECK(plan_of(replaced(yaml, "ctx: 128", "ctx: 256")).cells.back().key != key);
  CHECK(plan_of(replaced(yaml, "ctx: 128", "ctx: 128, heldout: ptb")).cells.back().key != key);
  CHECK(plan_of(replaced(yaml, "samples: 4", "samples: 8")).cells.back().key != key);
  CHECK(plan_of("seed: 1\n" + yaml).cells.back().key != key);
  CHECK(plan_of(replaced(yaml, "kv_bits: [16, 4]", "kv_bits: [4]")).cells.back().key == key);  // weights alone
}
