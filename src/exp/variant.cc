#include "exp/variant.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>

#include "engine/forward.h"
#include "exp/engine_options.h"
#include "exp/keep_super_weights.h"
#include "exp/rules.h"
#include "intactkv/inspect.h"
#include "intactkv/outlier_prefix.h"
#include "intactkv/prefix_file.h"
#include "intactkv/prefix_spec.h"
#include "io/error.h"
#include "io/data_root.h"
#include "intactkv/calibrate_data.h"
#include "quant/artifact.h"
#include "quant/awq.h"
#include "quant/gptq.h"
#include "kernels/packed_matrix.h"
#include "quant/quarot.h"
#include "quant/rtn.h"

namespace ikv::exp {

namespace {

// The YAML schema's rule for a setting (exp/rules.h): "--wbits must be between 2 and 8, got 9".
void check(const char* flag, double value, const Rule& rule) {
  const std::string expected = rule(value);
  if (!expected.empty()) fail(flag, " must be ", expected, ", got ", value);
}

}  // namespace

// The command line's flags already passed these rules (apps/cli_common.h); this covers specs built
// in code and the checks that span several settings.
void validate_variant(const VariantSpec& s) {
  const QuantizerSpec& q = s.quant;
  const std::string& m = q.method;
  if (std::find(kMethods.begin(), kMethods.end(), m) == kMethods.end())
    fail("--quant '", m, "' is not supported (fp, rtn, gptq, awq, quarot)");
  if (m != "fp") check("--wbits", q.wbits, rules::kBits);
  check("--quant-head", q.head_bits, rules::kBitsOrOff);
  if (m == "fp" && q.head_bits != 16) fail("--quant-head needs a weight quantizer (--quant)");
  check("--group", q.group, rules::kGroup);
  if (m == "quarot") {
    if (q.group != -1) fail("--quant quarot quantizes weights per output channel: --group must be -1, not ", q.group);
    check("--abits", q.abits, rules::kBitsOrOff);
    check("--clip-ratio", q.clip_ratio, rules::kClip);
    if (q.weight_quant != "rtn" && q.weight_quant != "gptq")
      fail("--weight-quant '", q.weight_quant, "' is not supported (rtn, gptq)");
  } else if (q.abits != 16 || q.clip_ratio != 1.0 || q.weight_quant != "rtn") {
    fail("--abits, --clip-ratio and --weight-quant apply to --quant quarot only");
  }
  if (q.reads_calibration_data()) {
    check("--calib-samples", q.samples, rules::kSamples);
    check("--calib-len", q.seq_len, rules::kSeqLen);
  }
  if (q.keep_super_weights && m != "rtn") fail("--keep-super-weights applies to --quant rtn only");
  if (q.static_scales() && m == "fp") fail("--scales static needs a quantizer (--quant)");
  if (q.scales != "static" && q.scales != "dynamic") fail("--scales '", q.scales, "' is not supported (dynamic, static)");
  validate_kv_scheme(s.kv, "--kv-quant/--kv-protect");
  check("--kv-bits", s.kv_bits, rules::kBitsOrOff);
  check("--intactkv-size", static_cast<double>(s.intactkv_size), rules::kCount);
  if (s.intactkv_size > 0 && !intactkv::is_prefix_spec(s.intactkv))
    fail("--intactkv-size applies to bos, vicuna and prompt:TEXT prefixes, not to --intactkv ", s.intactkv);
}

quant::CalibrationTokens calibration_tokens(const std::string& data_root, const LoadedModel& m,
                                            const QuantizerSpec& q, uint64_t seed) {
  if (!q.reads_calibration_data()) return {};
  // Calibrating on a test set would leak it into every number measured on it. The dataset names
  // are refused before resolving (they are not paths), files by name after.
  if (q.data == "wikitext2" || q.data == "ptb")
    fail("calibration data '", q.data, "' is an evaluation test set; calibrate on sharegpt or a training text");
  const std::string path = intactkv::resolve_calibration_data(data_root, q.data);
  const std::string file = std::filesystem::path(path).filename().string();
  if (file == "wiki.test.raw" || file == "ptb.test.txt")
    fail("calibration data '", q.data, "' is an evaluation test set (", file,
         "); calibrate on sharegpt or a training text");
  const model::Config& c = m.weights.config;
  intactkv::CalibrationDataOptions opt;
  opt.samples = q.samples;
  opt.heldout = 0;
  opt.max_len = std::min<int64_t>(q.seq_len, c.max_pos);
  opt.min_loss_tokens = 0;  // every token of a sample feeds the quantizer, not only the assistant's
  opt.seed = seed;
  intactkv::CalibrationData d = intactkv::load_calibration_data(path, *m.tokenizer, c.bos_tokens(), c.eos_id, opt);
  quant::CalibrationTokens out;
  for (auto& s : d.train) out.push_back(std::move(s.tokens));
  return out;
}

namespace {

// The quantizers' per-layer callback: the layer's part of the artifact first, then its time.
quant::LayerProgress written_then_reported(const std::function<void(int64_t)>& after_layer,
                                           const quant::LayerProgress& progress) {
  return [after_layer, progress](int64_t layer, int64_t n_layers, double seconds) {
    if (after_layer) after_layer(layer);
    if (progress) progress(layer, n_layers, seconds);
  };
}

// RTN or GPTQ of every decoder linear, a layer at a time; before_layer(l) runs before layer l is
// read (QuaRot rotates it there), after_layer(l) once it is packed.
void quantize_layers(model::Weights& w, const QuantizerSpec& q, const kernels::QuantSpec& spec,
                     const quant::CalibrationTokens& calib, const std::function<void(int64_t)>& before_layer,
                     const quant::LayerProgress& progress, const std::function<void(int64_t)>& after_layer) {
  if (q.method == "gptq") {
    quant::GptqOptions opt;
    opt.spec = spec;
    opt.act_order = q.act_order;
    opt.before_layer = before_layer;
    return quant::quantize_model_gptq(w, calib, opt, written_then_reported(after_layer, progress));
  }
  if (q.method != "rtn") fail("quantizer '", q.method, "' is not supported");
  for (size_t layer = 0; layer < w.layers.size(); ++layer) {
    if (before_layer) before_layer(static_cast<int64_t>(layer));
    for (const model::NamedLinear& nl : model::layer_linears(w, layer)) {
      kernels::Linear& l = *nl.linear;
      std::vector<float> dense = kernels::linear_dense_weight(l);
      kernels::set_packed(l, std::make_shared<kernels::PackedMatrix>(
                                 quant::quantize_rtn(dense.data(), l.out, l.in, spec, nl.name)));
    }
    if (after_layer) after_layer(static_cast<int64_t>(layer));
  }
}

}  // namespace

void quantize_weights(model::Weights& w, const QuantizerSpec& q, const quant::CalibrationTokens& calib,
                      quant::AwqFold* awq_fold, const std::function<void(int64_t)>& after_layer) {
  if (q.method == "fp") return;
  kernels::QuantSpec spec;
  spec.bits = q.wbits;
  spec.group = q.group;
  spec.sym = q.sym;
  for (auto& nl : model::named_linears(w)) kernels::validate_spec(spec, nl.linear->in, nl.name);  // fail before any work
  if (q.needs_calibration() && calib.empty()) fail(q.method, " needs calibration samples; none were given");
  // Each layer's time and the rest extrapolated at the mean rate so far, so a user knows early
  // whether a calibrated quantizer at 7B takes minutes or a day.
  auto progress_of = [](std::string method) {
    auto total = std::make_shared<double>(0.0);
    return quant::LayerProgress([method, total](int64_t layer, int64_t n_layers, double seconds) {
      *total += seconds;
      const double rest = *total / static_cast<double>(layer + 1) * static_cast<double>(n_layers - layer - 1);
      std::fprintf(stderr, "%s: layer %lld/%lld quantized (%.1f s; %.1f s so far, about %.2f h more for the rest)\n",
                   method.c_str(), (long long)layer + 1, (long long)n_layers, seconds, *total, rest / 3600.0);
    });
  };
  const quant::LayerProgress progress = progress_of(q.method);
  if (q.method == "quarot") {
    // Rotate, quantize the weights per output channel and symmetric (QuaRot's setting; q.sym is
    // implied) by RTN or GPTQ with FP activations, then quantize the activations from there on.
    // Each layer is rotated (expanded to fp32) just before it is quantized.
    QuantizerSpec wq = q;
    wq.method = q.weight_quant;
    wq.group = -1;
    wq.sym = true;
    quant::rotate_ends(w);
    quantize_layers(w, wq, {spec.bits, -1, true}, calib, [&](int64_t l) { quant::rotate_layer(w, l); },
                    progress_of(wq.method), after_layer);
    quant::set_activation_quant(w, q.abits, static_cast<float>(q.clip_ratio));
  } else if (q.method == "awq") {
    quant::AwqOptions opt;
    opt.spec = spec;
    quant::quantize_model_awq(w, calib, opt, written_then_reported(after_layer, progress), awq_fold);
  } else {
    quantize_layers(w, q, spec, calib, {}, progress, after_layer);
  }
  quantize_head(w, q);
}

void quantize_head(model::Weights& w, const QuantizerSpec& q) {
  if (q.head_bits >= 16) return;
  kernels::Linear& head = w.lm_head;
  const kernels::QuantSpec spec{q.head_bits, head.in % 128 == 0 ? 128 : -1, false};
  // A block of rows at a time from the head as stored (a 128k-vocabulary head is 2 GB as fp32).
  std::vector<float> whole;  // other forms (not expected: the head is quantized once)
  auto rows_of = [&](int64_t r0, int64_t n, float* out) {
    if (const auto* h = std::get_if<kernels::DenseHalf>(&head.weight))
      return kernels::half_to_f32(h->w.type, h->w.data + r0 * head.in, n * head.in, out);
    if (const auto* d = std::get_if<kernels::DenseF32>(&head.weight))
      return static_cast<void>(std::copy_n(d->w.data() + r0 * head.in, n * head.in, out));
    if (whole.empty()) whole = kernels::linear_dense_weight(head);
    std::copy_n(whole.data() + r0 * head.in, n * head.in, out);
  };
  kernels::set_packed(head, std::make_shared<kernels::PackedMatrix>(
                                quant::quantize_rtn_by_rows(head.out, head.in, spec, "lm_head.weight", rows_of)));
}

QuantizerSpec rtn_spec(int wbits, int group, bool sym) {
  QuantizerSpec q;
  q.method = "rtn";
  q.wbits = wbits;
  q.group = group;
  q.sym = sym;
  return q;
}

intactkv::Prefix build_intactkv_prefix(const IntactKVSpec& s, const LoadedModel& fp, const std::string& data_root,
                                       int64_t size, const std::string& auto_text, std::string* note) {
  using Kind = IntactKVSpec::Kind;
  const model::Weights& w = fp.weights;
  const model::Tokenizer& tok = *fp.tokenizer;
  const int32_t bos = w.config.bos_id;
  // bos, vicuna and prompt:TEXT in intactkv::prefix_tokens' words.
  auto spec = [&]() -> std::string {
    if (s.kind == Kind::Bos) return "bos";
    if (s.kind == Kind::Preset) return s.value;
    return "prompt:" + s.value;
  };
  if (s.kind == Kind::Preset && s.value == "outliers") {
    // PrefixQuant's data-chosen prefix, from 32 ShareGPT samples of 512 tokens.
    QuantizerSpec data;
    data.method = "gptq", data.samples = 32, data.seq_len = 512;  // a calibrated method's data settings
    engine::Engine e(w);
    const intactkv::OutlierPrefixChoice choice = intactkv::choose_outlier_prefix(e, calibration_tokens(data_root, fp, data, 0));
    std::vector<int32_t> ids = choice.tokens;
    if (size > static_cast<int64_t>(ids.size()))
      fail("IntactKV size ", size, " exceeds the ", ids.size(), " tokens of the outlier prefix");
    if (size > 0) ids.resize(size);
    if (note) {
      *note = "outlier prefix:";
      for (int64_t i = 0; i < choice.n; ++i)
        *note += " '" + tok.piece(choice.ranked[i].token) + "' (x" + std::to_string(choice.ranked[i].count) + ", ratio " +
                 std::to_string(static_cast<int64_t>(choice.ranked[i].max_ratio)) + ")";
    }
    intactkv::Prefix p = intactkv::build_prefix(e, ids);
    p.settings["outliers_per_sequence"] = std::to_string(choice.mean_outliers);
    return p;
  }
  switch (s.kind) {
    case Kind::Bos:
    case Kind::Preset:
    case Kind::Prompt:
      return intactkv::build_prefix(engine::Engine(w), intactkv::prefix_tokens(spec(), tok, bos, size));
    case Kind::Auto: {
      engine::Engine e(w);
      // The model's chat system turn (for LLaMA-2, the Vicuna system prompt).
      std::string text = auto_text;
      if (text.empty()) {
        const intactkv::ChatFormat f = intactkv::chat_format(tok);
        text = intactkv::system_turn(f, intactkv::default_system_message(f));
      }
      std::vector<int32_t> ids = intactkv::prefix_tokens("prompt:" + text, tok, bos);
      intactkv::AutoSize a =
          intactkv::auto_prefix_size(intactkv::inspect_pivots(e, tok, ids), static_cast<int64_t>(ids.size()));
      ids.resize(a.size);
      if (note) *note = a.explanation;
      return intactkv::build_prefix(e, ids);
    }
    case Kind::File:
      return intactkv::load_prefix(data_root.empty() ? s.value : io::data_file(data_root, s.value), w.config,
                                   w.fingerprint);
    case Kind::None:
    case Kind::Calibrated:
      break;
  }
  fail("IntactKV variant '", s.short_label(), "' has no prefix to build from the FP model alone");
}

quant::ArtifactLayout artifact_layout(const QuantizerSpec& q) {
  quant::ArtifactLayout a;
  a.spec = {q.wbits, q.group, q.sym};
  bool gptq = q.method == "gptq";
  if (q.method == "quarot") {  // as quantize_weights packs and rotates it
    a.spec = {q.wbits, -1, true};
    a.rotation_seed = quant::kQuarotSeed;
    a.act_bits = q.abits;
    a.act_clip = static_cast<float>(q.clip_ratio);
    gptq = q.weight_quant == "gptq";
  }
  a.act_order = gptq && q.act_order;
  return a;
}

QuantizerSpec quantize_or_load(model::Weights& w, const LoadedModel& fp32, const QuantizerSpec& q,
                               const std::string& data_root, uint64_t seed, const std::string& artifact,
                               const std::function<void(int64_t)>& after_layer) {
  QuantizerSpec out = q;
  std::vector<intactkv::SuperWeight> super;  // held out of RTN (keep_super_weights), found on the FP model
  if (q.keep_super_weights) super = model_super_weights(fp32);
  if (!artifact.empty()) {
    // Reports describe the artifact's weights, whatever q says.
    std::map<std::string, std::string> meta = quant::load_quantized(w, artifact);
    auto get = [&](const char* k, const std::string& dflt) {
      auto it = meta.find(k);
      return it != meta.end() ? it->second : dflt;
    };
    out.method = get("method", "rtn");
    out.wbits = std::stoi(get("bits", "4"));
    out.group = std::stoi(get("group", "128"));
    out.sym = get("sym", "0") == "1";
    out.abits = std::stoi(get("act_bits", "16"));
    quantize_head(w, q);  // the artifact holds the decoder layers; the head is quantized as it loads
    out.keep_super_weights = q.keep_super_weights, out.scales = q.scales;  // not the artifact's to say
  } else {
    leave_out_of_groups(w, super, q.group);
    quantize_weights(w, q, calibration_tokens(data_root, fp32, q.weights_only(), seed), nullptr, after_layer);
  }
  // The codes were made with the super weights out of their groups' ranges; the exact values
  // come from the FP model, on loading as on quantizing.
  restore_super_weights(w, super);
  return out;
}

size_t quantize_to_artifact(model::Weights& w, const LoadedModel& fp32, const QuantizerSpec& q,
                            const std::string& data_root, uint64_t seed, const std::string& path,
                            const std::map<std::string, std::string>& settings) {
  quant::QuantizedArtifactWriter out(w, artifact_layout(q), path, settings);
  quantize_or_load(w, fp32, q, data_root, seed, "", [&](int64_t l) { out.write_layer(w, l); });
  out.finish(w);
  return out.packed_bytes();
}

PreparedVariant prepare_variant(const std::string& data_root, const VariantSpec& spec, uint64_t seed) {
  validate_variant(spec);
  PreparedVariant v;
  // Quantizers (and saved packed weights) start from the checkpoint at full fp32 precision; the
  // dtype applies once the weights are packed.
  const bool packed = spec.quant.method != "fp" || !spec.quantized_file.empty();
  v.model = load_model_verified(data_root, spec.model, packed ? "fp32" : spec.dtype);
  // The prefix comes from the FP model, before quantizing.
  const IntactKVSpec ikv = parse_intactkv_arg(spec.intactkv);
  if (ikv.kind != IntactKVSpec::Kind::None) {
    // A file is taken as written, not looked up in the data root.
    v.prefix = build_intactkv_prefix(ikv, v.model, "", spec.intactkv_size, spec.auto_text, &v.intactkv_note);
    v.prefix->settings["prefix"] = spec.intactkv;
  }
  v.quant = spec.quant;
  if (packed) {
    const std::string artifact = spec.quantized_file.empty() ? "" : io::data_file("", spec.quantized_file);
    v.quant = quantize_or_load(v.model.weights, v.model, spec.quant, data_root, seed, artifact);
    apply_dtype(v.model.weights, spec.dtype);
  }
  v.engine_options = make_engine_options(
      spec.kv, v.quant, v.model.weights, v.prefix_ptr(),
      v.quant.static_scales() ? calibration_tokens(data_root, v.model, v.quant, seed) : quant::CalibrationTokens{});
  return v;
}

}  // namespace ikv::exp
