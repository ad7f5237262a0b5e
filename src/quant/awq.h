// AWQ (Lin et al., 2024): activation-aware weight quantization, with llm-awq's numerics. Per decoder
// layer, for each group of linears that share an input, search a per-input-channel scale
// s = mean|x|^α (α on a grid), minimizing the error of the quantized group's output; fold 1/s into
// the op that produces the input (input RMSNorm → q/k/v, post-attention RMSNorm → gate/up, up_proj →
// down_proj, and optionally v_proj → o_proj), then search a clipping range per group of weights,
// then quantize with RTN into the usual PackedMatrix. The search's building blocks are in
// quant/awq_search.h.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/weights.h"
#include "quant/layerwise.h"
#include "kernels/packed_matrix.h"

namespace ikv::quant {

struct AwqOptions {
  kernels::QuantSpec spec;          // bits, group (-1 = per channel), sym
  int scale_grid = 20;     // α in {0, 1/grid, …, (grid-1)/grid}
  bool clip = true;        // weight-clipping search after scaling (skips q/k, as llm-awq)
  int clip_grid = 20;      // max|w| shrunk by 1 - i/grid for i = 0 .. max_shrink·grid - 1 (llm-awq)
  double max_shrink = 0.5; // so the shrink factors are 1, 0.95, …, 0.55 at the defaults
  // The scale search's losses run on the first search_len tokens of the first calibration
  // sequences, search_tokens in all (at least one sequence); the mean |x| statistics and the clipping
  // sample use every calibration token. llm-awq searches on all its 128 blocks of 512 tokens, but on
  // a CPU the 20 evaluations of each block (attention included) dominate the cost, and a 1-D search
  // over 20 values does not need 64k tokens.
  int64_t search_tokens = 8192;
  int64_t search_len = 512;
  int64_t clip_tokens = 512;  // clipping search on this many tokens strided over all (llm-awq: 512)
  // v_proj → o_proj. With GQA a v channel feeds the o_proj inputs of every query head reading its
  // kv head, so the scale is searched per kv channel and repeated over those heads (exact in FP).
  // Off by default: it rescales V, and an IntactKV prefix holds V as the FP model computes it, so the
  // quantized model would read the prefix in other coordinates. (llm-awq skips this fold whenever
  // v_proj and o_proj differ in shape, i.e. for every GQA model.) On testbed-26M W3g128 (16 × 512
  // calibration tokens) it moves WikiText-2 perplexity from 137.4 to 136.0.
  bool fold_v_o = false;
};

// What AWQ folded into one linear: the stored weight Ŵ approximates diag(1/row_scale) · W ·
// diag(in_scale), so W_eff = diag(row_scale) · dequant(Ŵ) · diag(1/in_scale) is the weight in the
// original FP coordinates.
struct LinearFold {
  std::vector<float> in_scale;   // [in]: input channel j was multiplied by in_scale[j] (empty = 1)
  std::vector<float> row_scale;  // [out]: output row i was divided by row_scale[i] (empty = 1)
};
using AwqFold = std::map<std::string, LinearFold>;  // by model::named_linears name

// The whole model, layer by layer: each layer's linear inputs come from the calibration tokens run
// through the already scaled and quantized layers before it (engine::Engine::layer_forward). The
// scales are folded into the FP norms and linears, then every decoder linear is packed; `fold`, when
// given, receives what was folded into each linear.
void quantize_model_awq(model::Weights& w, const CalibrationTokens& calib, const AwqOptions& opt,
                        const LayerProgress& progress = {}, AwqFold* fold = nullptr);

}  // namespace ikv::quant
