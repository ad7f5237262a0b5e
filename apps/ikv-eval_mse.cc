// ikv-eval mse-sweep: quantization MSE of decoder-layer outputs vs IntactKV size (Figure 2).
#include <filesystem>
#include <nlohmann/json.hpp>

#include "exp/report.h"
#include "ikv-eval_commands.h"
#include "intactkv/mse_sweep.h"
#include "intactkv/prefix_spec.h"
#include "io/data_root.h"
#include "io/mapped_file.h"
#include "variant_options.h"
#include "exp/intactkv_figures.h"

namespace ikv::cli {
namespace {

struct SweepArgs {
  exp::VariantSpec variant;
  std::string prefix = "vicuna", data = "wikitext2", out = "results/mse_sweep";
  int64_t max_size = -1, samples = 8, len = 256;
};

void run_sweep(const Common& common, const SweepArgs& a) {
  exp::set_threads(common.threads);
  exp::validate_variant(a.variant);
  if (a.variant.quant.method == "fp") fail("mse-sweep: choose a quantizer (--quant rtn …): FP has no error to sweep");
  if (a.samples <= 0 || a.len <= 0) fail("mse-sweep: --samples and --len must be positive");
  const std::string root = io::find_data_root(common.data_root);
  const std::string text_path = exp::resolve_text_dataset(root, a.data);
  exp::LoadedModel fp = exp::load_model_verified(root, a.variant.model, "fp32");
  exp::LoadedModel q = exp::load_model_verified(root, a.variant.model, "fp32");
  exp::quantize_or_load(q.weights, q, a.variant.quant, root, 0);
  const std::vector<int32_t> prefix = intactkv::prefix_tokens(a.prefix, *fp.tokenizer, fp.weights.config.bos_id);
  // Samples: the prefix followed by consecutive chunks of the text (`len` tokens each).
  std::vector<int32_t> text = fp.tokenizer->encode(io::read_utf8_text(text_path));
  std::vector<std::vector<int32_t>> samples;
  for (int64_t i = 0; i < a.samples && (i + 1) * a.len <= static_cast<int64_t>(text.size()); ++i) {
    std::vector<int32_t> s = prefix;
    s.insert(s.end(), text.begin() + i * a.len, text.begin() + (i + 1) * a.len);
    if (static_cast<int64_t>(s.size()) > fp.weights.config.max_pos) s.resize(fp.weights.config.max_pos);
    samples.push_back(std::move(s));
  }
  if (samples.empty()) fail(text_path, ": too short for one sample of ", a.len, " tokens");
  engine::Engine fe(fp.weights), qe(q.weights);
  const int64_t max_size = a.max_size < 0 ? static_cast<int64_t>(prefix.size()) : a.max_size;
  intactkv::MseSweepResult r = intactkv::mse_sweep(fe, qe, prefix, samples, max_size, a.variant.kv_bits);
  std::filesystem::create_directories(a.out);
  const std::string title = exp::method_label(a.variant.quant.short_label(), 16) + (a.variant.kv_bits < 16 ? " KV" + std::to_string(a.variant.kv_bits) : "") +
                            ": MSE vs IntactKV size";
  exp::plot_mse_sweep(r, a.out + "/mse_sweep", title);
  io::write_file_atomic(a.out + "/mse_sweep.md", "# " + title + "\n\n" + intactkv::format_mse_sweep(r));
  if (common.json) {
    std::printf("%s\n", nlohmann::json({{"sizes", r.sizes}, {"layer_mse", r.layer_mse}, {"last_layer_mse", r.last_layer_mse},
                                        {"mean_layer_mse", r.mean_layer_mse}, {"samples", r.samples},
                                        {"tokens", r.tokens}, {"prefix_tokens", prefix.size()}})
                            .dump()
                            .c_str());
  } else {
    std::printf("%s\nplot and table written to %s/\n", intactkv::format_mse_sweep(r).c_str(), a.out.c_str());
  }
}

}  // namespace

void add_mse_sweep_command(CLI::App& app, Common& common) {
  static SweepArgs a;
  CLI::App* cmd = app.add_subcommand("mse-sweep", "quantization MSE of layer outputs vs IntactKV size");
  add_common(cmd, common);
  add_variant_options(cmd, a.variant);
  cmd->add_option("--prefix", a.prefix, "the prompt prefix whose sizes are swept: bos | vicuna | system[:TEXT] | prompt:TEXT");
  cmd->add_option("--max-size", a.max_size, "largest IntactKV size (default: the whole prefix)")
      ->check(rule(exp::rules::kCount));
  cmd->add_option("--data", a.data, "text after the prefix: wikitext2 | ptb | FILE");
  cmd->add_option("--samples", a.samples, "number of samples")->check(rule(exp::rules::kSamples));
  cmd->add_option("--len", a.len, "tokens of text per sample")->check(rule(exp::rules::kSamples));
  cmd->add_option("-o,--out", a.out, "output folder (table and plot)");
  cmd->callback([&common] { run_sweep(common, a); });
}

}  // namespace ikv::cli
