// *.ikv.safetensors: an IntactKV prefix on disk.
//   tensors  layers.{l}.key, layers.{l}.value  [n_kv_heads, P, head_dim], keys after RoPE, F32 or F16
//   metadata ikv_format "1", model_fingerprint, prefix_tokens (JSON list), origin fp|calibrated,
//            settings (JSON object: prefix spec, calibration settings, final loss …)
#pragma once
#include <string>

#include "intactkv/prefix.h"
#include "model/config.h"

namespace ikv::intactkv {

void save_prefix(const Prefix& p, const model::Config& c, const std::string& path, bool fp16 = false);
// Loads and checks it against the model it will be used with: another fingerprint or shape is an
// Error naming the file.
Prefix load_prefix(const std::string& path, const model::Config& c, const std::string& model_fingerprint);

}  // namespace ikv::intactkv
