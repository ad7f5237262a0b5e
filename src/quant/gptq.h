// GPTQ (Frantar et al., 2023): quantize a weight matrix column by column, each time spreading the
// rounding error over the not-yet-quantized columns through the inverse Hessian of the layer's
// input, H = 2 X Xᵀ. Group scales/zeros use the RTN numerics (quant/rtn.h), fp16-rounded, chosen on
// the fly when a group's first column comes up. The result is a PackedMatrix like RTN's, so every
// kernel and task runs unchanged; act-order adds an input permutation (kernels::Linear::in_perm).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/weights.h"
#include "quant/layerwise.h"
#include "quant/packed_matrix.h"

namespace ikv::quant {

struct GptqOptions {
  QuantSpec spec;            // bits, group (-1 = per channel), sym
  double damp = 0.01;        // dampening: λ = damp · mean(diag H) added to the diagonal
  int64_t block = 128;       // columns per lazy-batch block
  bool act_order = false;    // quantize columns in order of decreasing diag(H)
};

struct GptqMatrix {
  PackedMatrix packed;         // codes of W[:, perm] when act_order, else of W
  std::vector<int32_t> perm;   // empty, or the column order: packed column j is input channel perm[j]
};

// Quantizes W [rows, cols] given H [cols, cols] (row-major, the sum of 2 x xᵀ over calibration
// tokens; any positive scale is fine, GPTQ is invariant to it). Errors name `what`.
GptqMatrix gptq_quantize(const float* W, int64_t rows, int64_t cols, const std::vector<double>& H,
                         const GptqOptions& opt, const std::string& what);

// The whole model, layer by layer: each layer's linear inputs come from the calibration tokens run
// through the already-quantized layers before it (engine::Engine::layer_forward); all seven
// linears of the layer are quantized, then the layer's quantized output feeds the next layer.
void quantize_model_gptq(model::Weights& w, const CalibrationTokens& calib, const GptqOptions& opt,
                         const LayerProgress& progress = {});

}  // namespace ikv::quant
