// One evaluated variant of a model: which weights (FP, or quantized by a method), which KV-cache
// precision, and which IntactKV prefix. prepare_variant() makes it ready to evaluate: the FP
// model builds the prefix first (that is the point of IntactKV), then the weights are quantized.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "engine/kv_scheme.h"
#include "exp/config.h"
#include "exp/model_setup.h"
#include "intactkv/prefix.h"
#include "quant/artifact.h"
#include "quant/awq.h"
#include "quant/layerwise.h"

namespace ikv::exp {

struct VariantSpec {
  std::string model;             // path or data-root name
  std::string dtype = "fp32";    // compute dtype (exp::apply_dtype)
  QuantizerSpec quant;           // the YAML quantizer's settings (fp: none)
  int kv_bits = 16;              // 16 = KV cache not quantized
  KvQuantSpec kv;                // how a quantized KV cache is quantized (--kv-quant, --kv-protect)
  bool quantize_prefix = false;  // also quantize the IntactKV prefix's K/V
  std::string intactkv = "none"; // none | bos | vicuna | prompt:TEXT | auto | FILE.ikv.safetensors
  int64_t intactkv_size = 0;     // keep only the first tokens of the prefix (0 = all)
  std::string auto_text;         // the prompt whose pivots `auto` looks for (default: the Vicuna prompt)
  std::string quantized_file;    // load packed weights saved by `ikv-eval quantize` instead of quantizing
};

struct PreparedVariant {
  LoadedModel model;                       // weights as evaluated (quantized when asked)
  std::optional<intactkv::Prefix> prefix;  // from the FP model
  std::string intactkv_note;               // e.g. the explanation of an `auto` size
  QuantizerSpec quant;                     // the weights' settings (from the artifact with --quantized)
  engine::EngineOptions engine_options;    // the KV scheme, and static scales calibrated with the prefix
  const intactkv::Prefix* prefix_ptr() const { return prefix ? &*prefix : nullptr; }
};

// `seed` draws the quantizer's calibration samples (GPTQ, AWQ).
PreparedVariant prepare_variant(const std::string& data_root, const VariantSpec& spec, uint64_t seed = 0);

// The one place a variant's parts are made, for the command line (prepare_variant) and for
// `ikv-eval run` (Executor, which caches them as artifacts):
//
// The IntactKV prefix `s` names, from the FP model `fp`: bos, a preset or prompt:TEXT, cut to its
// first `size` tokens when size > 0; auto, <bos> + auto_text (empty: the Vicuna system prompt) cut
// after its last pivot token (intactkv::auto_prefix_size), whose explanation goes to *note; a file
// (resolved against data_root; with none, the path as written), checked against `fp`. None and Calibrated are an Error: a
// calibrated prefix needs the quantized weights, and the executor trains it.
intactkv::Prefix build_intactkv_prefix(const IntactKVSpec& s, const LoadedModel& fp, const std::string& data_root,
                                       int64_t size = 0, const std::string& auto_text = "",
                                       std::string* note = nullptr);
// Makes fp32 weights `w` (a copy of, or the weights of, `fp32`) packed: the weights saved in
// `artifact` when one is given, else w quantized by q (calibration samples drawn with `seed`),
// with after_layer(l) called once layer l's linears are packed for good (quantize_weights).
// Returns the weights' settings: q, or the artifact's own. The caller applies the dtype after.
QuantizerSpec quantize_or_load(model::Weights& w, const LoadedModel& fp32, const QuantizerSpec& q,
                               const std::string& data_root, uint64_t seed, const std::string& artifact = "",
                               const std::function<void(int64_t layer)>& after_layer = {});
// quantize_or_load by q (no artifact to load) with each decoder layer written to `path` as soon as
// it is packed (quant::QuantizedArtifactWriter, settings as its metadata); an interrupted run leaves
// no file. Returns the packed bytes written.
size_t quantize_to_artifact(model::Weights& w, const LoadedModel& fp32, const QuantizerSpec& q,
                            const std::string& data_root, uint64_t seed, const std::string& path,
                            const std::map<std::string, std::string>& settings);
// What the artifact of a model quantized by q declares up front (quant::QuantizedArtifactWriter): the
// packing quantize_weights uses, GPTQ's act-order permutations, QuaRot's rotation and activations.
quant::ArtifactLayout artifact_layout(const QuantizerSpec& q);
// lm_head by RTN to q.head_bits (nothing at 16): quantize_weights' last step, and what follows
// loading a packed artifact, which holds the decoder layers only.
void quantize_head(model::Weights& w, const QuantizerSpec& q);
// Quantizes every decoder linear in place, and lm_head if q.head_bits < 16 (the embedding stays
// full precision). GPTQ and AWQ need calibration tokens (calibration_tokens); RTN ignores them.
// awq_fold, when given, receives the scales AWQ folded into each linear (quant::quantize_model_awq).
// after_layer(l), when given, runs as soon as decoder layer l is packed (its codes change no more;
// QuaRot's activation quantization comes after the last layer), layers in order: the hook that
// writes the artifact a layer at a time.
void quantize_weights(model::Weights& w, const QuantizerSpec& q, const quant::CalibrationTokens& calib = {},
                      quant::AwqFold* awq_fold = nullptr, const std::function<void(int64_t layer)>& after_layer = {});
// The calibration sequences of q (q.samples sequences of at most q.seq_len tokens, capped at the
// model's max length, from q.data: sharegpt, a ShareGPT .json or a plain-text file). Refuses the
// evaluation sets (WikiText-2 / PTB test) by name. Empty for methods that need none.
quant::CalibrationTokens calibration_tokens(const std::string& data_root, const LoadedModel& m,
                                            const QuantizerSpec& q, uint64_t seed);
// An RTN quantizer setting (tests, benchmarks).
QuantizerSpec rtn_spec(int wbits, int group = 128, bool sym = false);
// Checks settings before any work (bits range, method names): one-line Error.
void validate_variant(const VariantSpec& spec);

}  // namespace ikv::exp
