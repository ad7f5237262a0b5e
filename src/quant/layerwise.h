// What the calibrated weight quantizers (GPTQ, AWQ) share: the calibration token sequences they
// stream through the model, and a per-layer progress callback.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ikv::quant {

// Token sequences (each starting with <bos>), run through the model one decoder layer at a time.
using CalibrationTokens = std::vector<std::vector<int32_t>>;

// Called after each decoder layer is quantized: (layer, n_layers, seconds spent on it).
using LayerProgress = std::function<void(int64_t layer, int64_t n_layers, double seconds)>;

}  // namespace ikv::quant
