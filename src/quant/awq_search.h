// AWQ's building blocks (quant/awq.h runs them layer by layer), following llm-awq's auto_scale.py and
// auto_clip.py: the scale formula, the grid search over α, the blocks whose output error the search
// measures, the FP-exact fold of the scales, and the weight-clipping search.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/forward.h"
#include "kernels/ops.h"
#include "model/weights.h"
#include "quant/awq.h"

namespace ikv::quant {

// llm-awq's scale for a grid point: s = max(x_mean_abs^α, 1e-4), then s / sqrt(max(s) · min(s)).
// α = 0 gives s = 1 (plain RTN).
std::vector<float> awq_scales(const std::vector<float>& x_mean_abs, double alpha);

// Q(W · diag(s)) · diag(1/s): W [rows, cols] scaled per input channel, quantized with the exact fp32
// RTN numerics (fake_quantize_rtn) and mapped back, as the search evaluates a candidate.
std::vector<float> scaled_fake_quant(const float* W, int64_t rows, int64_t cols, const std::vector<float>& s,
                                     const kernels::QuantSpec& spec);

struct ScaleSearch {
  int best = 0;                // grid index of the lowest loss (the first one on ties)
  double alpha = 0;            // best / grid
  std::vector<float> scales;   // awq_scales(x_mean_abs, alpha)
  std::vector<double> losses;  // per grid point; losses[0] is α = 0, i.e. RTN's loss
};
using ScaleLoss = std::function<double(const std::vector<float>& scales)>;
// Evaluates loss(awq_scales(x_mean_abs, i / grid)) for i = 0 .. grid-1 and keeps the lowest.
ScaleSearch search_scale_grid(const std::vector<float>& x_mean_abs, int grid, const ScaleLoss& loss);

// mean((a - b)²) over n values, accumulated in double (llm-awq: (org_out - out).float().pow(2).mean()).
double mean_squared_error(const float* a, const float* b, int64_t n);

// One linear alone (o_proj, down_proj): loss = mean((X Ŵᵀ − X Wᵀ)²) with Ŵ = scaled_fake_quant(W, s).
ScaleSearch search_linear_scale(const float* X, int64_t n, const float* W, int64_t out, int64_t in,
                                const std::vector<float>& x_mean_abs, const kernels::QuantSpec& spec, int grid);

// The blocks the q/k/v and gate/up searches inspect (llm-awq's module2inspect), on x holding
// consecutive sequences of lens[i] tokens, each at positions 0.. of its own causal attention.
// out [n, dim] = o_proj(attention(rope(x Wqᵀ), rope(x Wkᵀ), x Wvᵀ)), no residual.
void attention_block(const model::Config& c, const kernels::RopeTable& rope, const float* x,
                     const std::vector<int64_t>& lens, const float* wq, const float* wk, const float* wv,
                     const float* wo, float* out);
// out [n, dim] = down(silu(x gateᵀ) · x upᵀ), no residual.
void mlp_block(const float* x, int64_t n, int64_t dim, int64_t hidden, const float* wg, const float* wu,
               const float* wd, float* out);

// One decoder layer's calibration data, as the search sees it.
struct AwqLayerInputs {
  engine::LinearInputs mean_abs;  // per-channel mean |x| of the four linear inputs over all tokens
  engine::LinearInputs search;    // the inputs on the search sequences, concatenated
  std::vector<int64_t> search_lens;
  engine::LinearInputs clip;      // the inputs on the clipping tokens (every stride-th token)
  int64_t clip_n = 0;
};
// Runs layer `layer` of e's weights over each sequence of hidden [seq][n * dim] (left unchanged).
AwqLayerInputs collect_awq_inputs(const engine::Engine& e, int64_t layer,
                                  const std::vector<std::vector<float>>& hidden, const AwqOptions& opt);

// A searched group's loss at α = 0 (s = 1: plain RTN) and at the chosen α (never above it).
struct AwqGroupLoss {
  std::string group;  // "qkv", "o", "gate_up", "down"
  double rtn = 0, awq = 0, alpha = 0;
};
// A decoder layer's scales (empty = that group is not scaled).
struct AwqLayerScales {
  std::vector<float> qkv;      // [dim]    ÷ input RMSNorm, × q/k/v columns
  std::vector<float> o;        // [kv_dim] ÷ v_proj rows, × o_proj columns of every query head on that kv head
  std::vector<float> gate_up;  // [dim]    ÷ post-attention RMSNorm, × gate/up columns
  std::vector<float> down;     // [hidden] ÷ up_proj rows, × down_proj columns
  std::vector<AwqGroupLoss> losses;  // of the searched groups, in the order above
};
// The four searches of llm-awq's auto_scale_block, each on the unscaled FP layer: q/k/v on the
// attention block's output (o_proj in FP), v → o on o_proj's output (only with opt.fold_v_o), gate/up
// on the MLP's output (down_proj in FP), down on its own output.
AwqLayerScales search_awq_scales(const model::LayerWeights& L, const model::Config& c,
                                 const kernels::RopeTable& rope, const AwqLayerInputs& in, const AwqOptions& opt);
// Folds the scales into the FP layer (dense fp32 linears): the layer computes the same function.
void fold_awq_scales(model::LayerWeights& L, const model::Config& c, const AwqLayerScales& s);
// A [kv_dim] scale repeated over the query heads reading each kv head: [q_dim] (o_proj's inputs).
std::vector<float> repeat_kv_scale(const std::vector<float>& s_kv, const model::Config& c);

// llm-awq auto_clip_layer: for each row and group of W [rows, cols], the max |w| among
// absmax · (1 - i/grid), i = 0 .. int(max_shrink·grid) - 1, whose clamp to [-max, max] followed by
// RTN gives the lowest mean over the n tokens of X [n, cols] of (x_g · (Q(clamp(w_g)) − w_g))²
// (first minimum on ties). Returns [rows * groups].
std::vector<float> search_clip(const float* W, int64_t rows, int64_t cols, const float* X, int64_t n,
                               const kernels::QuantSpec& spec, int grid, double max_shrink);
// W[r, g·G + j] = clamp(W[r, g·G + j], -max_val[r·groups + g], max_val[r·groups + g]).
void apply_clip(float* W, int64_t rows, int64_t cols, const kernels::QuantSpec& spec, const std::vector<float>& max_val);

}  // namespace ikv::quant
