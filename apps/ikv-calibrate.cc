// ikv-calibrate: train an IntactKV prefix for a quantized model (intactkv/calibrate.h) and write it
// as a *.ikv.safetensors file that `ikv-eval ppl --intactkv FILE` (and every other evaluation)
// uses like any IntactKV. Rerunning with the same -o after an interruption resumes from the last
// epoch's checkpoint.
//
//   ikv-calibrate -m testbed-26M --quant rtn --wbits 3 --group 128 --prefix vicuna --data sharegpt
//                 -o /tmp/testbed-w3.ikv.safetensors --samples 128 --max-len 512
#include <cmath>
#include <nlohmann/json.hpp>

#include "exp/report.h"
#include "cli_common.h"
#include "exp/variant.h"
#include "intactkv/calibrate.h"
#include "intactkv/calibrate_data.h"
#include "io/data_root.h"
#include "io/memory.h"
#include "variant_options.h"
#include "exp/intactkv_figures.h"

namespace ikv::cli {
namespace {

struct Args {
  exp::VariantSpec variant;  // model, quantizer, KV bits
  intactkv::CalibrationSpec spec;
  int64_t target_budget_mb = 4096;
  Args() { variant.quant = exp::rtn_spec(3); }  // the paper's main setting; FP needs no calibration
};

// NaN (no held-out samples) becomes JSON null.
nlohmann::json num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

void run(const Common& common, Args& a) {
  exp::set_threads(common.threads);
  intactkv::CalibrationSpec& s = a.spec;
  s.kv_bits = a.variant.kv_bits;
  s.quant_label = exp::method_label(a.variant.quant.short_label(), 16);
  if (a.target_budget_mb < 0) fail("--target-budget-mb ", a.target_budget_mb, " must be >= 0");
  s.target_budget_bytes = a.target_budget_mb << 20;
  s.progress = !common.json;
  // Every check that needs no model comes first: bad input writes nothing.
  exp::validate_variant(a.variant);
  intactkv::validate_calibration_spec(s);
  const std::string root = io::find_data_root(common.data_root);
  intactkv::resolve_calibration_data(root, s.data);

  exp::LoadedModel fp = exp::load_model_verified(root, a.variant.model, "fp32");
  model::Weights quantized = fp.weights;
  exp::quantize_or_load(quantized, fp, a.variant.quant, root, 0);

  intactkv::CalibrationHooks hooks;
  hooks.on_step = [&](const intactkv::StepLog& l) {
    if (common.json) return;
    std::printf("step %4lld  epoch %3lld  lr %.3g  loss %.6g  last layer %.6g  grad norm %.4g\n", (long long)l.step,
                (long long)l.epoch + 1, l.lr, l.loss, l.loss_last_layer, l.grad_norm);
    std::fflush(stdout);
  };
  hooks.on_epoch = [&](const intactkv::EpochLog& e) {
    if (common.json)
      std::printf("%s\n", nlohmann::json({{"epoch", e.epoch}, {"epochs", e.epochs}, {"step", e.step}, {"loss", e.loss},
                                          {"loss_last_layer", e.loss_last_layer}, {"heldout_mse", num(e.heldout_mse)},
                                          {"seconds", e.seconds}})
                              .dump()
                              .c_str());
    else
      std::printf("epoch %lld/%lld: loss %.6g (last layer %.6g), held-out MSE %.6g, %.1f s\n", (long long)e.epoch,
                  (long long)e.epochs, e.loss, e.loss_last_layer, e.heldout_mse, e.seconds);
    std::fflush(stdout);
    return true;
  };
  intactkv::CalibrationResult r = intactkv::calibrate_prefix(fp.weights, quantized, *fp.tokenizer, root, s, hooks);
  const std::string stem = intactkv::calibration_stem(s.output);
  exp::plot_calibration_loss(r.log, stem, "IntactKV calibration, " + s.quant_label);
  const std::string plot_png = r.log.empty() ? "" : stem + ".loss.png";
  const double step_seconds = r.steps > 0 ? (r.seconds - r.targets_seconds) / r.steps : 0;
  const double peak_gb = io::peak_resident_bytes() / 1e9;
  if (common.json) {
    std::printf("%s\n", nlohmann::json({{"output", r.output}, {"model", a.variant.model}, {"quant", s.quant_label},
                                        {"kv_bits", s.kv_bits}, {"prefix", s.prefix},
                                        {"prefix_tokens", r.prefix.size()}, {"data", s.data},
                                        {"samples", s.samples}, {"max_len", s.max_len}, {"epochs", s.epochs},
                                        {"steps", r.steps}, {"resumed_from_epoch", r.resumed_from_epoch},
                                        {"first_loss", r.first_loss}, {"final_loss", r.final_loss},
                                        {"heldout_mse_before", num(r.heldout_mse_before)},
                                        {"heldout_mse_after", num(r.heldout_mse_after)},
                                        {"targets_seconds", r.targets_seconds}, {"seconds", r.seconds},
                                        {"seconds_per_step", step_seconds}, {"peak_rss_gb", peak_gb},
                                        {"plot", plot_png}, {"log", r.log_csv}})
                            .dump()
                            .c_str());
  } else {
    std::printf("%s: %s, %lld steps, training loss %.6g (first step) -> %.6g (last epoch), held-out MSE %.6g -> %.6g "
                "(FP prefix -> calibrated), %.1f s (%.2f s/step), peak memory %.2f GB\n"
                "loss curve: %s\n",
                r.output.c_str(), s.quant_label.c_str(), (long long)r.steps, r.first_loss, r.final_loss,
                r.heldout_mse_before, r.heldout_mse_after, r.seconds, step_seconds, peak_gb, plot_png.c_str());
  }
}

}  // namespace
}  // namespace ikv::cli

int main(int argc, char** argv) {
  using namespace ikv;
  CLI::App app{"ikv-calibrate: train an IntactKV prefix for a quantized model (AdamW on the prefix K/V)",
               "ikv-calibrate"};
  cli::Common common;
  cli::Args a;
  intactkv::CalibrationSpec& s = a.spec;
  cli::add_common(&app, common);
  app.add_option("-m,--model", a.variant.model, "HF model folder or llama2.c .bin (path or data-root name)")
      ->required();
  cli::add_quant_method_option(&app, a.variant.quant);
  app.add_option("--wbits", a.variant.quant.wbits, "weight bits (2..8)")->check(cli::rule(exp::rules::kBits));
  app.add_option("--group", a.variant.quant.group, "quantization group size (-1 = per channel)")
      ->check(cli::rule(exp::rules::kGroup));
  app.add_flag("--sym", a.variant.quant.sym, "symmetric weight quantization");
  cli::add_quarot_options(&app, a.variant.quant);
  app.add_option("--kv-bits", a.variant.kv_bits, "KV-cache bits of the new tokens (2..8, 16 = off)")
      ->check(cli::rule(exp::rules::kBitsOrOff));
  app.add_option("--prefix", s.prefix, "starting prefix: bos | vicuna | prompt:TEXT | FILE.ikv.safetensors");
  app.add_option("--data", s.data, "sharegpt | FILE.json (ShareGPT) | FILE (plain text)");
  app.add_option("-o,--output", s.output, "the calibrated prefix, FILE.ikv.safetensors")->required();
  app.add_option("--samples", s.samples, "calibration samples")->check(cli::rule(exp::rules::kSamples));
  app.add_option("--heldout", s.heldout, "held-out samples (after the calibration ones) for the MSE report");
  app.add_option("--max-len", s.max_len, "tokens per sample, prefix included")->check(cli::rule(exp::rules::kSeqLen));
  app.add_option("--min-loss-tokens", s.min_loss_tokens, "ShareGPT: keep conversations with more assistant tokens");
  app.add_option("--epochs", s.epochs, "passes over the samples")->check(cli::rule(exp::rules::kSamples));
  app.add_option("--lr", s.lr, "AdamW learning rate")->check(cli::rule(exp::rules::kPositiveReal));
  app.add_option("--grad-accum", s.grad_accum, "samples per optimizer step (batch 1, accumulated)");
  app.add_option("--clip", s.clip, "global gradient-norm clip (0 = none)");
  app.add_option("--warmup", s.warmup, "fraction of steps with linear learning-rate warm-up");
  app.add_option("--weight-decay", s.weight_decay, "AdamW decoupled weight decay");
  app.add_option("--seed", s.seed, "data selection and sample-order seed");
  app.add_option("--target-budget-mb", a.target_budget_mb, "FP targets beyond this many MB go to a file beside -o");
  app.callback([&] { cli::run(common, a); });
  return cli::run_app(app, argc, argv);
}
