// Quantization-MSE sweep (IntactKV Figure 2): for IntactKV sizes s = 0..N of a prompt prefix, the
// mean squared error between the FP and the quantized model's decoder-layer outputs on the tokens
// after the prefix. Size 0 = no IntactKV (the quantized model computes everything); size s = the
// first s prefix tokens' KV come from the FP model.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/forward.h"

namespace ikv::intactkv {

struct MseSweepResult {
  std::vector<int64_t> sizes;
  std::vector<std::vector<double>> layer_mse;  // [size index][layer]
  std::vector<double> last_layer_mse, mean_layer_mse;
  int64_t samples = 0, tokens = 0;  // evaluated tokens per size (after the prefix)
};

// samples: token sequences that each begin with `prefix` (the full prefix, <bos> first).
MseSweepResult mse_sweep(const engine::Engine& fp, const engine::Engine& quant, const std::vector<int32_t>& prefix,
                         const std::vector<std::vector<int32_t>>& samples, int64_t max_size, int kv_bits = 16);

std::string format_mse_sweep(const MseSweepResult& r);

}  // namespace ikv::intactkv
