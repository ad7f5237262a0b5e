// IntactKV: the key/value cache of a prompt's first tokens ([BOS], a system prompt) computed by
// the full-precision model and prepended, read-only, to the quantized model's cache.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/forward.h"

namespace ikv::intactkv {

struct Prefix {
  std::vector<int32_t> tokens;                // the prefix token ids, <bos> first
  std::vector<std::vector<float>> key, value;  // per layer [n_kv_heads, P, head_dim], keys after RoPE
  std::string model_fingerprint;
  std::string origin = "fp";                  // fp | calibrated
  std::map<std::string, std::string> settings;  // how it was made (prefix spec, calibration settings)
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
};

// Runs the (full-precision) engine on the prefix tokens and keeps every layer's keys and values.
Prefix build_prefix(const engine::Engine& fp_engine, const std::vector<int32_t>& tokens);

// Copies the prefix into positions [0, P) of the cache of `eng`'s model and marks them read-only.
// They are stored exactly as computed unless quantize_prefix asks for the cache's KV quantizer to
// apply to them too. A QuaRot-rotated model (its weights' rotation) keeps keys and values rotated
// per head, so the FP prefix is mapped into those coordinates first (quant::kv_to_model).
void install_prefix(engine::KVCache& cache, const Prefix& prefix, const engine::Engine& eng,
                    bool quantize_prefix = false);

// How many leading tokens of `input` equal the prefix's tokens: those are not recomputed, the
// prefix KV stands in for them (the reference drops them from the input).
int64_t matched_prefix_length(const Prefix& prefix, const std::vector<int32_t>& input);

}  // namespace ikv::intactkv
