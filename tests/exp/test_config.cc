#include <doctest/doctest.h>

#include <filesystem>

#include "exp/config.h"
#include "exp/exp_fixtures.h"
#include "io/error.h"
#include "io/mapped_file.h"
#include "io/sha256.h"

using namespace ikv::exp;
using ikv::exp::testing::config_error;
using ikv::exp::testing::config_fixture;

namespace {

std::string load_error(const std::string& path) {
  try {
    load_config(path);
  } catch (const ikv::Error& e) {
    return e.what();
  }
  return "no error";
}

// A valid config in two lines; tests add one bad setting after it.
const std::string kValid = "models: [{path: models/m}]\ntasks: {ppl: {}}\n";

}  // namespace

TEST_CASE("config: the full example parses into the expected structs") {
  const ExperimentConfig c = load_config(config_fixture("full.yaml"));
  CHECK(c.data_root ==
        (std::filesystem::path(config_fixture("")) / "../shared/ikv-data").lexically_normal().string());
  CHECK(c.threads == 2);
  CHECK(c.seed == 0);
  REQUIRE(c.models.size() == 1);
  CHECK(c.models[0].name == "testbed-26M");
  CHECK(c.models[0].path == "models/testbed-26M");
  REQUIRE(c.quantizers.size() == 5);
  CHECK(c.quantizers[0].is_fp());
  CHECK(c.quantizers[1].short_label() == "rtn-w3g128");
  CHECK(c.quantizers[2].method == "gptq");
  CHECK(c.quantizers[2].needs_calibration());
  CHECK(c.quantizers[3].short_label() == "awq-w3g128");
  CHECK(c.quantizers[4].short_label() == "quarot-w4a4-gptq");
  CHECK(c.quantizers[4].group == -1);
  CHECK(c.quantizers[4].clip_ratio == 0.9);
  CHECK(c.kv_bits == std::vector<int>{16});
  REQUIRE(c.intactkv.size() == 7);
  CHECK(c.intactkv[0].short_label() == "none");
  CHECK(c.intactkv[1].short_label() == "bos");
  CHECK(c.intactkv[2].short_label() == "auto");
  CHECK(c.intactkv[3].kind == IntactKVSpec::Kind::Prompt);
  CHECK(c.intactkv[3].short_label().starts_with("prompt-"));
  CHECK(c.intactkv[4].short_label() == "vicuna");
  CHECK(c.intactkv[5].short_label() == "file-testbed");
  CHECK(c.intactkv[5].sha256.size() == 64);
  CHECK(c.intactkv[6].short_label() == "vicuna+cal");
  CHECK(c.intactkv[6].calibration.lr == 2.0e-4);
  REQUIRE(c.tasks.ppl);
  CHECK(c.tasks.ppl->datasets == std::vector<std::string>{"wikitext2", "ptb"});
  CHECK(c.tasks.ppl->ctx == 512);
  CHECK(c.tasks.ppl->windows == 40);
  REQUIRE(c.tasks.mmlu);
  CHECK(c.tasks.mmlu->subjects.empty());
  REQUIRE(c.tasks.qa);
  CHECK(c.tasks.qa->tasks == kQaTasks);
  REQUIRE(c.tasks.mse_sweep);
  CHECK(c.tasks.mse_sweep->max_size == 34);
  REQUIRE(c.tasks.kld);
  CHECK(c.tasks.kld->windows == 8);
  REQUIRE(c.tasks.quant_error);
  CHECK(c.tasks.quant_error->heldout == "ptb");
  CHECK(c.tasks.quant_error->tokens == 4096);
  CHECK(c.tasks.quant_error->ctx == 256);
  CHECK(c.sources == std::vector<std::string>{config_fixture("full.yaml")});
}

TEST_CASE("config: sha256 of the text as written, extends files included") {
  const ExperimentConfig c = load_config(config_fixture("full.yaml"));
  CHECK(c.sha256 == ikv::io::file_sha256(config_fixture("full.yaml")));  // what sha256sum prints
  const ExperimentConfig child = load_config(config_fixture("child.yaml"));
  REQUIRE(child.sources.size() >= 2);
  std::string texts;
  for (const std::string& f : child.sources) texts += ikv::io::read_text_file(f);
  CHECK(child.sha256 == ikv::io::sha256_hex(texts));
  CHECK(parse_config(kValid, "t.yaml").sha256 != parse_config(kValid + "# a comment\n", "t.yaml").sha256);
}

TEST_CASE("config: defaults") {
  const ExperimentConfig c = parse_config(kValid, "t.yaml");
  CHECK(c.models[0].name == "m");
  CHECK(c.models[0].dtype == "fp32");
  CHECK(c.threads == 0);
  CHECK(c.quantizers.size() == 1);
  CHECK(c.quantizers[0].is_fp());
  CHECK(c.kv_bits == std::vector<int>{16});
  CHECK(c.intactkv.size() == 1);
  CHECK(c.tasks.ppl->datasets == std::vector<std::string>{"wikitext2"});
  CHECK(parse_config("models: [models/x/]\ntasks: {qa: }\n", "t.yaml").models[0].name == "x");
  CHECK(parse_config("models: [models/x/]\ntasks: {qa: }\n", "t.yaml").tasks.qa->tasks == kQaTasks);
  CHECK(parse_config(kValid + "kv_bits: 4\n", "t.yaml").kv_bits == std::vector<int>{4});
}

TEST_CASE("config: each class of error names file:line:column") {
  // Unknown key with a did-you-mean (the misspelt wbits is then also missing).
  CHECK(config_error(kValid + "quantizers:\n  - {method: rtn, wbit: 3}\n") ==
        "t.yaml:4:19: unknown key \"wbit\" in rtn quantizer (did you mean \"wbits\"?); "
        "t.yaml:4:5: missing key \"wbits\"");
  CHECK(config_error(kValid + "seeds: 3\n") ==
        "t.yaml:3:1: unknown key \"seeds\" in the config (did you mean \"seed\"?)");
  CHECK(config_error(kValid + "colour: 3\n")
            .starts_with("t.yaml:3:1: unknown key \"colour\" in the config; valid keys: data_root"));
  // Wrong types.
  CHECK(config_error(kValid + "threads: abc\n") == "t.yaml:3:10: expected an integer, got 'abc'");
  CHECK(config_error(kValid + "threads: [1]\n") == "t.yaml:3:10: expected an integer, got a list");
  CHECK(config_error(kValid + "quantizers: [{method: rtn, wbits: 3, sym: maybe}]\n") ==
        "t.yaml:3:43: expected true or false, got 'maybe'");
  CHECK(config_error(kValid + "intactkv: [{calibrated: {lr: fast}}]\n") ==
        "t.yaml:3:30: expected a number, got 'fast'");
  // Impossible values.
  CHECK(config_error(kValid + "quantizers: [{method: rtn, wbits: 9}]\n") ==
        "t.yaml:3:35: wbits must be between 2 and 8, got 9");
  CHECK(config_error(kValid + "quantizers: [{method: rtn, wbits: 1}]\n") ==
        "t.yaml:3:35: wbits must be between 2 and 8, got 1");
  CHECK(config_error(kValid + "quantizers: [{method: rtn, wbits: 4, group: 0}]\n") ==
        "t.yaml:3:45: group must be -1 or positive, got 0");
  CHECK(config_error(kValid + "kv_bits: [4, 9]\n") ==
        "t.yaml:3:14: kv_bits must be between 2 and 8, or 16, got 9");
  CHECK(config_error("models: [{path: m}]\ntasks: {ppl: {ctx: 2}}\n") ==
        "t.yaml:2:20: ctx must be at least 3, got 2");
  CHECK(config_error("models: [{path: m}]\ntasks: {qa: {limit: -1}}\n") ==
        "t.yaml:2:21: limit must be at least 0, got -1");
  CHECK(config_error("models: [{path: m}]\ntasks: {qa: {tasks: [arc_easy, arc_easyy]}}\n") ==
        "t.yaml:2:32: unknown QA task \"arc_easyy\" (did you mean \"arc_easy\"?)");
  CHECK(config_error(kValid + "quantizers: [{method: rtm, wbits: 3}]\n") ==
        "t.yaml:3:23: unknown quantization method \"rtm\" (did you mean \"rtn\"?); expected fp, rtn, gptq, "
        "awq or quarot");
  CHECK(config_error("models: [{path: m, dtype: fp16}]\ntasks: {ppl: {}}\n") ==
        "t.yaml:1:27: dtype must be fp32, bf16 or q8, got 'fp16'");
  CHECK(config_error("models: []\ntasks: {ppl: {}}\n") == "t.yaml:1:9: models must list at least one model");
  CHECK(config_error("tasks: {ppl: {}}\n") == "t.yaml:1:1: missing key \"models\"");
  CHECK(config_error(kValid + "intactkv: [none, bso]\n") ==
        "t.yaml:3:18: unknown IntactKV variant \"bso\" (did you mean \"bos\"?); expected none, bos, auto, system, outliers or "
        "a map "
        "with prompt, preset, file or calibrated");
  CHECK(config_error("models: [{path: m}]\ntasks: {ppl: {datasets: [wikitxt2]}}\n") ==
        "t.yaml:2:26: unknown dataset \"wikitxt2\" (did you mean \"wikitext2\"?); expected wikitext2, ptb, "
        "sharegpt or a file path");
  CHECK(config_error("models: [{path: m}, {path: other/m}]\ntasks: {ppl: {}}\n") ==
        "t.yaml:1:21: model name \"m\" used twice");
  // Several problems come back together, in file order.
  CHECK(config_error("models: [{path: m}]\nthreads: x\nseed: y\ntasks: {}\n") ==
        "t.yaml:2:10: expected an integer, got 'x'; t.yaml:3:7: expected an integer, got 'y'; "
        "t.yaml:4:8: tasks must name at least one task");
  // Malformed YAML.
  CHECK(config_error("models: [{path: m}\ntasks: {ppl: {}}\n") == "t.yaml:2:1: end of sequence flow not found");
  // Missing file.
  CHECK(load_error("/nonexistent/ikv.yaml") == "/nonexistent/ikv.yaml: cannot read config file");
}

TEST_CASE("config: extends deep-merges maps and replaces lists") {
  const ExperimentConfig c = load_config(config_fixture("child.yaml"));
  CHECK(c.seed == 7);                            // overridden
  CHECK(c.data_root == config_fixture("data"));  // relative to base.yaml
  REQUIRE(c.quantizers.size() == 1);             // list replaced
  CHECK(c.quantizers[0].short_label() == "rtn-w3g128");
  CHECK(c.intactkv.size() == 2);    // inherited
  CHECK(c.tasks.ppl->ctx == 1024);  // map merged key by key
  CHECK(c.tasks.ppl->windows == 4);
  CHECK(c.tasks.ppl->datasets == std::vector<std::string>{"wikitext2"});
  CHECK(c.tasks.qa->limit == 10);
  CHECK(c.sources == std::vector<std::string>{config_fixture("child.yaml"), config_fixture("base.yaml")});

  const ExperimentConfig g = load_config(config_fixture("nested/grandchild.yaml"));
  CHECK(g.kv_bits == std::vector<int>{4});
  CHECK(g.seed == 7);
  CHECK(g.tasks.ppl->ctx == 1024);
  CHECK(g.sources.size() == 3);
}

TEST_CASE("config: extends errors point at the right file") {
  const std::string a = config_fixture("cycle_a.yaml"), b = config_fixture("cycle_b.yaml");
  CHECK(load_error(a) == b + ":1:10: extends cycle: " + a + " -> " + b + " -> " + a);
  CHECK(load_error(config_fixture("missing_base.yaml")) == config_fixture("missing_base.yaml") +
                                                               ":1:10: cannot read extends file " +
                                                               config_fixture("no_such_file.yaml"));
  CHECK(load_error(config_fixture("bad_child.yaml")) ==
        config_fixture("bad_base.yaml") + ":4:26: wbits must be between 2 and 8, got 9");
}

TEST_CASE("config: anchors, aliases and << merge keys") {
  const ExperimentConfig c = load_config(config_fixture("anchors.yaml"));
  REQUIRE(c.quantizers.size() == 3);
  CHECK(c.quantizers[0].short_label() == "rtn-w3g128");
  CHECK(c.quantizers[1].short_label() == "rtn-w4g128");
  CHECK(c.quantizers[2].method == "gptq");
  CHECK(c.quantizers[2].wbits == 3);
  CHECK(c.quantizers[2].samples == 64);
  CHECK(c.quantizers[2].data == "wikitext2");
  CHECK(c.models[0].dtype == "bf16");
  CHECK(c.kv_bits == std::vector<int>{16, 4});
  // Plain aliases too: the same map used twice.
  const ExperimentConfig d = parse_config(
      "models: [&m {path: a}]\nquantizers: [&q {method: rtn, wbits: 3}, *q]\ntasks: {kld: {}}\n", "t.yaml");
  CHECK(d.quantizers.size() == 2);
  CHECK(d.quantizers[1] == d.quantizers[0]);
}

TEST_CASE("config: check_paths_exist resolves against the data root") {
  ikv::exp::testing::TempDir root;
  std::filesystem::create_directories(root / "models/here");
  const ExperimentConfig ok = parse_config("models:\n  - {path: models/here}\ntasks: {ppl: {}}\n", "t.yaml");
  CHECK_NOTHROW(check_paths_exist(ok, root.path()));
  const ExperimentConfig bad =
      parse_config("models:\n  - {path: models/here}\n  - {path: models/gone}\ntasks: {ppl: {}}\n", "t.yaml");
  std::string message;
  try {
    check_paths_exist(bad, root.path());
  } catch (const ikv::Error& e) {
    message = e.what();
  }
  CHECK(message == "t.yaml:3:5: model path does not exist: " + root.path() + "/models/gone");
  CHECK(model_dir(bad.models[0], root.path()) == root.path() + "/models/here");
  ModelSpec absolute{"x", "/abs/path", "fp32", ""};
  CHECK(model_dir(absolute, root.path()) == "/abs/path");
}

TEST_CASE("config: nested aliases are bounded before they exhaust memory") {
  // 9 levels of 9 aliases: 9^9 scalars once expanded. yaml-cpp shares aliased nodes; we copy them.
  std::string text = "x-a0: &a0 [a, a, a, a, a, a, a, a, a]\n";
  for (int i = 1; i < 10; ++i) {
    text += "x-a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 9; ++j) text += (j ? ", *a" : "*a") + std::to_string(i - 1);
    text += "]\n";
  }
  const std::string e = config_error(text + kValid);
  CHECK(e.starts_with("t.yaml:"));
  CHECK(e.find("config expands to more than 100000 YAML nodes") != std::string::npos);
  // A few levels (a real use of anchors) are fine.
  CHECK(config_error("x-a: &a [1, 2]\nx-b: [*a, *a]\n" + kValid) == "no error");
}

TEST_CASE("config: threads are bounded by the machine, the same rule as --threads") {
  CHECK(config_error(kValid + "threads: 100000\n").find("t.yaml:3:10: threads must be between 0 and") == 0);
  CHECK(config_error(kValid + "threads: 1\n") == "no error");
}

TEST_CASE("config: one model path listed twice under two names") {
  CHECK(config_error("models: [{path: models/m, name: a}, {path: models/m, name: b}]\ntasks: {ppl: {}}\n")
            .find("model path \"models/m\" is already listed as \"a\"") != std::string::npos);
  // Another dtype of the same checkpoint is another model.
  CHECK(config_error("models: [{path: models/m, name: a}, {path: models/m, name: b, dtype: bf16}]\ntasks: {ppl: {}}\n") ==
        "no error");
}

TEST_CASE("config: text that is not UTF-8 is refused (written back it would name another file)") {
  CHECK(config_error("models: [{path: \"p\xfb\x05\"}]\ntasks: {ppl: {}}\n") == "t.yaml: not UTF-8 text (byte offset 18)");
}

TEST_CASE("config: QA/MMLU settings that match the paper or lm-eval (bos, MMLU format and limit, Avg)") {
  const ExperimentConfig d = parse_config("models: [m]\ntasks: {qa: {}, mmlu: {}}\n", "t.yaml");
  CHECK(d.tasks.qa->bos == "always");
  CHECK(d.tasks.qa->average.empty());  // the paper's tasks
  CHECK(d.tasks.mmlu->max_ctx == 2048);
  CHECK(d.tasks.mmlu->format == "paper");
  const ExperimentConfig c = parse_config(
      "models: [m]\ntasks:\n  qa: {bos: never, average: [arc_easy, piqa]}\n"
      "  mmlu: {bos: never, format: lm-eval, max_ctx: 0}\n",
      "t.yaml");
  CHECK(c.tasks.qa->bos == "never");
  CHECK(c.tasks.qa->average == std::vector<std::string>{"arc_easy", "piqa"});
  CHECK(c.tasks.mmlu->format == "lm-eval");
  CHECK(c.tasks.mmlu->max_ctx == 0);
  CHECK(config_error(kValid + "x: 1\n").find("unknown key") != std::string::npos);
  CHECK(config_error("models: [m]\ntasks: {qa: {bos: sometimes}}\n") ==
        "t.yaml:2:19: bos must be always or never, got 'sometimes'");
  CHECK(config_error("models: [m]\ntasks: {mmlu: {format: lmeval}}\n") ==
        "t.yaml:2:24: format must be paper or lm-eval, got 'lmeval' (did you mean \"lm-eval\"?)");
  CHECK(config_error("models: [m]\ntasks: {qa: {average: [arc_easyy]}}\n")
            .find("unknown QA task \"arc_easyy\" (did you mean \"arc_easy\"?)") != std::string::npos);
  // An IntactKV prefix starts with <bos>.
  CHECK(config_error("models: [m]\nintactkv: [none, bos]\ntasks: {qa: {bos: never}}\n") ==
        "t.yaml:2:11: IntactKV prefixes start with <bos>; they cannot be used with bos: never");
}

TEST_CASE("config: quant_error needs an rtn, gptq or awq quantizer and the CLI's values") {
  const ExperimentConfig c = parse_config(
      "models: [{path: models/m}]\nquantizers: [{method: awq, wbits: 3}]\ntasks: {quant_error: }\n", "t.yaml");
  REQUIRE(c.tasks.quant_error);
  CHECK(*c.tasks.quant_error == QuantErrorTask{});  // wikitext2, 8192 tokens, ctx 512: the CLI's defaults
  CHECK(config_error("models: [{path: models/m}]\ntasks: {quant_error: {}}\n") ==
        "t.yaml:2:22: quant_error measures rtn, gptq and awq quantizers; the config has none");
  const std::string rtn = "models: [{path: models/m}]\nquantizers: [{method: rtn, wbits: 3}]\ntasks:\n";
  CHECK(config_error(rtn + "  quant_error: {ctx: 1}\n") == "t.yaml:4:22: ctx must be at least 2, got 1");
  CHECK(config_error(rtn + "  quant_error: {tokens: 0}\n") == "t.yaml:4:25: tokens must be at least 1, got 0");
  CHECK(config_error(rtn + "  quant_error: {heldout: wikitext3}\n").find("unknown dataset \"wikitext3\"") !=
        std::string::npos);
  CHECK(config_error(rtn + "  quant_error: {held_out: ptb}\n").find("did you mean \"heldout\"") != std::string::npos);
}
