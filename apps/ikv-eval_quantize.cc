// ikv-eval quantize: pack a model's decoder linears once and save them for reuse (--quantized).
#include <nlohmann/json.hpp>

#include "exp/report.h"
#include "ikv-eval_commands.h"
#include "io/data_root.h"
#include "io/mapped_file.h"
#include "variant_options.h"

namespace ikv::cli {
namespace {

struct QuantizeArgs {
  exp::VariantSpec variant;
  std::string out;
};

void run_quantize(const Common& common, const QuantizeArgs& a) {
  exp::set_threads(common.threads);
  exp::validate_variant(a.variant);
  if (a.variant.quant.method == "fp") fail("quantize: choose a quantizer with --quant (rtn, gptq, awq, quarot)");
  const std::string root = io::find_data_root(common.data_root);
  exp::LoadedModel m = exp::load_model_verified(root, a.variant.model, "fp32");
  const std::string label = exp::method_label(a.variant.quant.short_label(), 16);
  const size_t bytes = exp::quantize_to_artifact(m.weights, m, a.variant.quant, root, 0, a.out,
                                                 {{"method", a.variant.quant.method}, {"label", label}});
  if (common.json)
    std::printf("%s\n", nlohmann::json({{"file", a.out}, {"label", label}, {"packed_bytes", bytes}}).dump().c_str());
  else
    std::printf("wrote %s: %s, %.1f MB of packed weights\n", a.out.c_str(), label.c_str(), bytes / 1e6);
}

}  // namespace

void add_quantize_command(CLI::App& app, Common& common) {
  static QuantizeArgs a;
  CLI::App* cmd = app.add_subcommand("quantize", "quantize a model's linears and save the packed weights");
  add_common(cmd, common);
  add_variant_options(cmd, a.variant);
  cmd->add_option("-o,--output", a.out, "output .quant.safetensors")->required();
  cmd->callback([&common] { run_quantize(common, a); });
}

}  // namespace ikv::cli
