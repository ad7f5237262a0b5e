// One evaluated variant of a model: which weights (FP, or quantized by a method), which KV-cache
// precision, and which IntactKV prefix. prepare_variant() makes it ready to evaluate: the FP
// model builds the prefix first (that is the point of IntactKV), then the weights are quantized.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "exp/model_setup.h"
#include "intactkv/prefix.h"

namespace ikv::exp {

struct QuantChoice {
  std::string method = "fp";  // fp | rtn
  int wbits = 4;
  int group = 128;            // -1 = per output channel
  bool sym = false;
  std::string label() const;  // "FP16", "RTN W3g128", …
};

struct VariantSpec {
  std::string model;             // path or data-root name
  std::string dtype = "fp32";    // compute dtype of the dense path
  QuantChoice quant;
  int kv_bits = 16;              // 16 = KV cache not quantized
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
  const intactkv::Prefix* prefix_ptr() const { return prefix ? &*prefix : nullptr; }
};

PreparedVariant prepare_variant(const std::string& data_root, const VariantSpec& spec);
// Quantizes every decoder linear in place (embedding and lm_head stay full precision).
void quantize_weights(model::Weights& w, const QuantChoice& q);
// Checks settings before any work (bits range, method names): one-line Error.
void validate_variant(const VariantSpec& spec);

}  // namespace ikv::exp
