// Command-line flags that choose a variant (model, quantizer, KV bits, IntactKV), shared by the
// ikv-eval subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <vector>

#include "cli_common.h"

#include "exp/variant.h"

namespace ikv::cli {

// --quant. QuaRot quantizes weights per output channel, so choosing it makes -1 the group (CLI11
// runs option callbacks in the order the options were added: an explicit --group, added after
// --quant, still wins, and validate_variant rejects anything but -1 for quarot).
inline CLI::Option* add_quant_method_option(CLI::App* app, exp::QuantizerSpec& q) {
  return app->add_option_function<std::string>(
      "--quant",
      [&q](const std::string& m) {
        q.method = m;
        if (m == "quarot") q.group = -1;
      },
      "weight quantizer: fp | rtn | gptq | awq | quarot (rotated W/A/KV quantization)");
}

// QuaRot's activation quantization and weight quantizer.
inline std::vector<CLI::Option*> add_quarot_options(CLI::App* app, exp::QuantizerSpec& q) {
  return {app->add_option("--abits", q.abits, "quarot: activation bits, per token symmetric (2..8, 16 = off)")
              ->check(rule(exp::rules::kBitsOrOff)),
          app->add_option("--clip-ratio", q.clip_ratio, "quarot: activation clip ratio in (0, 1] (default 1)")
              ->check(rule(exp::rules::kClip)),
          app->add_option("--weight-quant", q.weight_quant, "quarot: weight quantizer after rotation: rtn | gptq")};
}

inline void add_variant_options(CLI::App* app, exp::VariantSpec& v) {
  app->add_option("-m,--model", v.model, "HF model folder or llama2.c .bin (path or data-root name)")->required();
  app->add_option("--dtype", v.dtype,
                  "compute dtype: fp32 | bf16 (bf16 weights for dense linears, bf16 inputs for packed ones) | "
                  "q8 (packed linears take int8 inputs in blocks of 128: the VNNI kernel)");
  if (v.quant.is_fp()) v.quant.wbits = 4;  // the width once --quant picks a method
  CLI::Option* quant = add_quant_method_option(app, v.quant);
  // A quantizer's settings without --quant would be silently unused.
  std::vector<CLI::Option*> settings = {
      app->add_option("--wbits", v.quant.wbits, "weight bits (2..8)")->check(rule(exp::rules::kBits)),
      app->add_option("--group", v.quant.group, "quantization group size (-1 = per channel)")
          ->check(rule(exp::rules::kGroup)),
      app->add_flag("--sym", v.quant.sym, "symmetric weight quantization"),
      app->add_flag("--act-order", v.quant.act_order, "gptq: quantize columns in order of decreasing Hessian diagonal"),
      app->add_option("--quant-head", v.quant.head_bits,
                      "lm_head bits by RTN (2..8; 16 = full precision, the paper's setting and the default)")
          ->check(rule(exp::rules::kBitsOrOff))};
  for (CLI::Option* o : add_quarot_options(app, v.quant)) settings.push_back(o);
  settings.push_back(app->add_flag("--keep-super-weights", v.quant.keep_super_weights,
                                   "rtn: hold the model's super weights out of the quantization, exact"));
  settings.push_back(app->add_option("--scales", v.quant.scales,
                                     "dynamic | static: static per-tensor activation and KV scales (PrefixQuant), "
                                     "calibrated on --calib-data with the IntactKV prefix")
                         ->check(CLI::IsMember({"dynamic", "static"})));
  settings.push_back(
      app->add_option("--calib-data", v.quant.data, "gptq/awq/quarot-gptq calibration data: sharegpt | FILE.json | text FILE"));
  settings.push_back(app->add_option("--calib-samples", v.quant.samples, "gptq/awq calibration samples (default 128)")
                         ->check(rule(exp::rules::kSamples)));
  settings.push_back(
      app->add_option("--calib-len", v.quant.seq_len, "gptq/awq tokens per sample (default 2048, capped at the model's max)")
          ->check(rule(exp::rules::kSeqLen)));
  for (CLI::Option* o : settings) o->needs(quant);
  // The artifact's own settings are what it holds: --quant and its settings cannot also apply.
  CLI::Option* quantized =
      app->add_option("--quantized", v.quantized_file, "packed weights saved by `ikv-eval quantize` (instead of --quant)");
  quantized->excludes(quant);
  app->add_option("--kv-bits", v.kv_bits, "KV-cache bits (2..8, 16 = off)")->check(rule(exp::rules::kBitsOrOff));
  app->add_option("--kv-quant", v.kv.keys,
                  "keys of a quantized KV cache: per_token | per_channel_prerope (KIVI; values per token)")
      ->check(CLI::IsMember(exp::kKeyQuant));
  app->add_option("--kv-residual", v.kv.residual, "per_channel_prerope: most recent tokens kept full precision")
      ->check(rule(exp::rules::kCount));
  app->add_option("--kv-group", v.kv.group, "per_channel_prerope: tokens per key group (default 128)")
      ->check(rule(exp::rules::kSamples));
  app->add_option("--kv-protect", v.kv.protect, "none | sinks: keep massive-activation tokens' K/V unquantized")
      ->check(CLI::IsMember(exp::kKvProtect));
  app->add_option("--intactkv", v.intactkv, "none | bos | vicuna | system | outliers | prompt:TEXT | auto | FILE.ikv.safetensors");
  app->add_option("--intactkv-size", v.intactkv_size, "keep only the first N prefix tokens (0 = all)")
      ->check(rule(exp::rules::kCount));
  app->add_flag("--quantize-prefix", v.quantize_prefix, "quantize the IntactKV prefix K/V too (with --kv-bits)");
}

}  // namespace ikv::cli
