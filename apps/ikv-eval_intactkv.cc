// ikv-eval intactkv build and ikv-eval inspect.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "exp/model_setup.h"
#include "ikv-eval_commands.h"
#include "intactkv/inspect.h"
#include "intactkv/prefix_file.h"
#include "intactkv/prefix_spec.h"
#include "intactkv/super_weights.h"
#include "io/data_root.h"
#include "io/mapped_file.h"
#include "exp/intactkv_figures.h"

namespace ikv::cli {
namespace {

struct BuildArgs {
  std::string model, prefix = "bos", out, dtype = "fp32";
  int64_t size = 0;
  bool fp16 = false;
};

void run_build(const Common& common, const BuildArgs& a) {
  exp::set_threads(common.threads);
  if (!intactkv::is_prefix_spec(a.prefix)) fail("--prefix '", a.prefix, "' is not one of bos, vicuna, system[:TEXT], prompt:TEXT");
  const std::string root = io::find_data_root(common.data_root);
  exp::LoadedModel m = exp::load_model_verified(root, a.model, a.dtype);
  engine::Engine fp(m.weights);
  intactkv::Prefix p = intactkv::build_prefix(fp, intactkv::prefix_tokens(a.prefix, *m.tokenizer, m.weights.config.bos_id, a.size));
  p.settings["prefix"] = a.prefix;
  p.settings["dtype"] = a.dtype;
  intactkv::save_prefix(p, m.weights.config, a.out, a.fp16);
  if (common.json)
    std::printf("%s\n", nlohmann::json({{"file", a.out}, {"tokens", p.tokens}, {"origin", p.origin},
                                        {"model_fingerprint", p.model_fingerprint}}).dump().c_str());
  else
    std::printf("wrote %s: %lld prefix tokens from the FP model\n", a.out.c_str(), (long long)p.size());
}

struct InspectArgs {
  std::string model, text_file, prompt, out = "results/inspect";
  int64_t positions = 16, max_tokens = 256;
  double ratio = 5.0;
};

void run_inspect(const Common& common, const InspectArgs& a) {
  exp::set_threads(common.threads);
  if (a.text_file.empty() == a.prompt.empty()) fail("inspect: give exactly one of --text FILE or --prompt TEXT");
  const std::string root = io::find_data_root(common.data_root);
  exp::LoadedModel m = exp::load_model_verified(root, a.model);
  std::string text = a.prompt.empty() ? io::read_utf8_text(io::data_file(root, a.text_file)) : a.prompt;
  std::vector<int32_t> ids = m.weights.config.bos_tokens();
  for (int32_t t : m.tokenizer->encode(text)) ids.push_back(t);
  if (static_cast<int64_t>(ids.size()) > a.max_tokens) ids.resize(a.max_tokens);
  engine::Engine fp(m.weights);
  intactkv::PivotReport r = intactkv::inspect_pivots(fp, *m.tokenizer, ids, a.positions, a.ratio);
  const std::vector<intactkv::SuperWeight> super = intactkv::find_super_weights(fp, ids);
  nlohmann::json super_json = nlohmann::json::array();
  std::string super_text = "super weights (down_proj scalars behind a massive activation):";
  for (const intactkv::SuperWeight& s : super) {
    super_json.push_back({{"layer", s.layer + 1}, {"position", s.position}, {"row", s.row}, {"col", s.col},
                          {"weight", s.weight}, {"input", s.input}, {"output", s.output}, {"share", s.share}});
    char line[200];
    std::snprintf(line, sizeof line, "\n  layer %lld down_proj[%lld, %lld] = %.4g x input %.4g at position %lld: %.0f%% of output %.4g",
                  (long long)s.layer + 1, (long long)s.row, (long long)s.col, s.weight, s.input, (long long)s.position,
                  100 * s.share, s.output);
    super_text += line;
  }
  if (super.empty()) super_text += " none";
  const std::string title = std::filesystem::path(a.model).filename().string();
  exp::write_inspect_outputs(r, a.out, title);
  if (common.json) {
    nlohmann::json pivots = nlohmann::json::array();
    for (int64_t p : r.pivots) {
      const auto& t = r.tokens[p];
      pivots.push_back({{"position", p}, {"piece", t.piece}, {"peak", t.peak}, {"layer", t.layer + 1},
                        {"channel", t.channel}, {"layers", t.layers_above}, {"attention_mass", t.attention_mass}});
    }
    for (auto& p : pivots)
      for (auto& l : p["layers"]) l = l.get<int64_t>() + 1;
    std::printf("%s\n", nlohmann::json({{"tokens", ids.size()}, {"median_peak", r.median_peak}, {"pivots", pivots},
                                        {"super_weights", super_json}, {"out", a.out}}).dump().c_str());
  } else {
    std::printf("%s\n%s\nplots and table written to %s/\n", intactkv::format_inspect_table(r, a.positions).c_str(),
                super_text.c_str(), a.out.c_str());
  }
}

}  // namespace

void add_intactkv_command(CLI::App& app, Common& common) {
  static BuildArgs b;
  CLI::App* group = app.add_subcommand("intactkv", "IntactKV prefix files");
  group->require_subcommand(1);
  CLI::App* cmd = group->add_subcommand("build", "run the FP model on a prefix and save its KV cache");
  add_common(cmd, common);
  cmd->add_option("-m,--model", b.model, "model")->required();
  cmd->add_option("--prefix", b.prefix, "bos | vicuna | system[:TEXT] | prompt:TEXT");
  cmd->add_option("--size", b.size, "keep the first N prefix tokens (0 = all)")->check(rule(exp::rules::kCount));
  cmd->add_option("-o,--output", b.out, "output .ikv.safetensors")->required();
  cmd->add_option("--dtype", b.dtype, "compute dtype of the FP model: fp32 | bf16");
  cmd->add_flag("--fp16", b.fp16, "store K/V as fp16 (default fp32)");
  cmd->callback([&common] { run_build(common, b); });
}

void add_inspect_command(CLI::App& app, Common& common) {
  static InspectArgs a;
  CLI::App* cmd = app.add_subcommand("inspect", "pivot tokens: activation peaks and attention sinks");
  add_common(cmd, common);
  cmd->add_option("-m,--model", a.model, "model")->required();
  cmd->add_option("--text", a.text_file, "text file to run (first --max-tokens tokens)");
  cmd->add_option("--prompt", a.prompt, "text to run");
  cmd->add_option("--positions", a.positions, "first positions shown in tables and attention maps")
      ->check(rule(exp::rules::kSamples));
  cmd->add_option("--max-tokens", a.max_tokens, "tokens of the text to run")->check(rule(exp::rules::kSamples));
  cmd->add_option("--ratio", a.ratio, "pivot threshold: peak ≥ ratio × median token peak");
  cmd->add_option("-o,--out", a.out, "output folder for the table and plots");
  cmd->callback([&common] { run_inspect(common, a); });
}

}  // namespace ikv::cli
