// ikv-eval quant-error: the layer reconstruction error of each weight quantizer, per decoder linear,
// on held-out activations of the FP model (exp/quant_error.h).
#include <sstream>

#include "exp/model_setup.h"
#include "exp/quant_error.h"
#include "ikv-eval_commands.h"
#include "io/data_root.h"
#include "io/mapped_file.h"

namespace ikv::cli {
namespace {

struct QuantErrorArgs {
  exp::QuantErrorSettings study;
  std::string methods = "rtn,gptq,awq";
  std::string out;
};

std::string command_line(const QuantErrorArgs& a) {
  const exp::QuantErrorSettings& s = a.study;
  std::ostringstream c;
  c << "ikv-eval quant-error -m " << s.model << " --wbits " << s.quant.wbits << " --group " << s.quant.group
    << (s.quant.sym ? " --sym" : "") << (s.quant.act_order ? " --act-order" : "") << " --methods " << a.methods
    << " --heldout " << s.heldout << " --tokens " << s.tokens << " --ctx " << s.ctx << " --calib-data " << s.quant.data
    << " --calib-samples " << s.quant.samples << " --calib-len " << s.quant.seq_len;
  if (!a.out.empty()) c << " -o " << a.out;
  return c.str();
}

void run(const Common& common, QuantErrorArgs a) {
  exp::set_threads(common.threads);
  a.study.methods = exp::quant_error_methods(a.methods);
  const exp::QuantErrorResult r = exp::run_quant_error(io::find_data_root(common.data_root), a.study);
  for (const auto& m : r.methods)
    if (!m.failure.empty()) std::fprintf(stderr, "quant-error: %s failed: %s\n", m.method.c_str(), m.failure.c_str());
  const std::string md = exp::quant_error_markdown(a.study, r, command_line(a));
  if (!a.out.empty()) io::write_file_atomic(a.out, md);
  if (common.json)
    std::printf("%s\n", exp::quant_error_json(a.study, r).dump().c_str());
  else
    std::printf("%s", md.c_str());
}

}  // namespace

void add_quant_error_command(CLI::App& app, Common& common) {
  static QuantErrorArgs a;
  exp::QuantErrorSettings& s = a.study;
  CLI::App* cmd = app.add_subcommand(
      "quant-error", "layer reconstruction error of RTN / GPTQ / AWQ per linear (held-out activations)");
  add_common(cmd, common);
  cmd->add_option("-m,--model", s.model, "HF model folder or llama2.c .bin (path or data-root name)")->required();
  cmd->add_option("--wbits", s.quant.wbits, "weight bits (2..8)")->check(rule(exp::rules::kBits));
  cmd->add_option("--group", s.quant.group, "quantization group size (-1 = per channel)")
      ->check(rule(exp::rules::kGroup));
  cmd->add_flag("--sym", s.quant.sym, "symmetric weight quantization");
  cmd->add_flag("--act-order", s.quant.act_order, "gptq: quantize columns in order of decreasing Hessian diagonal");
  cmd->add_option("--methods", a.methods, "comma-separated: rtn,gptq,awq (RTN, the baseline, always runs)");
  cmd->add_option("--heldout", s.heldout, "held-out text for the activations: wikitext2 | ptb | FILE");
  cmd->add_option("--tokens", s.tokens, "held-out tokens")->check(rule(exp::rules::kSamples));
  cmd->add_option("--ctx", s.ctx, "tokens per held-out sequence (<bos> included)")->check(rule(exp::rules::kSeqLen));
  cmd->add_option("--calib-data", s.quant.data, "gptq/awq calibration data: sharegpt | FILE.json | text FILE");
  cmd->add_option("--calib-samples", s.quant.samples, "gptq/awq calibration samples (default 128)")
      ->check(rule(exp::rules::kSamples));
  cmd->add_option("--calib-len", s.quant.seq_len, "gptq/awq tokens per sample (default 2048, capped at the model's max)")
      ->check(rule(exp::rules::kSeqLen));
  cmd->add_option("-o,--output", a.out, "also write the Markdown table to this file");
  cmd->callback([&common] { run(common, a); });
}

}  // namespace ikv::cli
