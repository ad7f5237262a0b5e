// The state an interrupted IntactKV calibration resumes from, and its file (intactkv/calibrate.h):
// safetensors with tensors {prefix,adam_m,adam_v}.{l}.{key,value} [n_kv_heads, P, head_dim] in F32
// (exact, so a resumed run continues bit for bit) and metadata
//   ikv_checkpoint "1"
//   key            the settings, model and data it belongs to (JSON); another key is refused
//   step, epoch    optimizer steps and epochs done
//   rng            the mt19937_64 state that draws each epoch's sample order, as text
//   log            JSON rows [step, epoch, lr, loss, loss_last_layer, grad_norm]
// Written atomically (temporary file + rename) after every epoch.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "intactkv/backward.h"
#include "intactkv/calibrate.h"

namespace ikv::intactkv {

struct TrainState {
  PrefixKV<float> p, m, v;  // the prefix and AdamW's first and second moments
  int64_t step = 0, epoch = 0;
  std::mt19937_64 rng;
  std::vector<StepLog> log;
};

void save_checkpoint(const std::string& path, const TrainState& st, const model::Config& c, const std::string& key);
// Loads the checkpoint into st (shaped for the model and prefix already) if there is one; false if
// none. Another key, a damaged or foreign file: an Error naming the file.
bool load_checkpoint(const std::string& path, TrainState& st, const model::Config& c, const std::string& key);

}  // namespace ikv::intactkv
