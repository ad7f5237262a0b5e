// AWQ (Lin et al., 2024): activation-aware weight quantization. Per decoder layer, for each group of
// linears that share an input, search a per-input-channel scale s = mean|x|^α (α on a grid),
// minimizing the error of the quantized group's output; fold 1/s into the op that produces the
// input (input RMSNorm → q/k/v, v_proj → o_proj, post-attention RMSNorm → gate/up, up_proj →
// down_proj), then search a clipping range per group of weights, then quantize with RTN.
#pragma once
#include <cstdint>

#include "model/weights.h"
#include "quant/layerwise.h"
#include "quant/packed_matrix.h"

namespace ikv::quant {

struct AwqOptions {
  QuantSpec spec;          // bits, group (-1 = per channel), sym
  int scale_grid = 20;     // α in {0, 1/grid, …, (grid-1)/grid}
  bool clip = true;        // weight-clipping search after scaling
  int clip_grid = 20;      // shrink factors 1, 1 - 1/grid·max_shrink, …
  double max_shrink = 0.5; // shrink max/min down to (1 - max_shrink) at most
};

// The whole model, layer by layer (engine::Engine::layer_forward feeds each layer the output of the
// already-quantized layers before it). Scales are folded into the FP norms/linears, then every
// decoder linear is packed.
void quantize_model_awq(model::Weights& w, const CalibrationTokens& calib, const AwqOptions& opt,
                        const LayerProgress& progress = {});

}  // namespace ikv::quant
