// What a cell will cost on this machine before it runs: seconds (from its forward tokens, the
// flops they take and GEMM rates measured here a moment ago) and peak memory (from the model's
// shapes and what each stage holds at once). `ikv-eval run --dry-run` prints both per cell, and a
// run refuses a cell that cannot fit in the memory available, with the number it needs.
//
// The memory model follows the code, stage by stage, and takes the largest:
//   weights     FP: the checkpoint's 16-bit linears read in place (fp32 ones converted to fp32);
//               packed: codes + fp16 scales (+ zero points), the head and embedding as computed
//   quantizing  the packed model so far + one layer upcast to fp32 + GPTQ/AWQ's calibration
//               residual streams (samples x seq_len x dim fp32) and Hessians (double)
//   evaluating  weights + KV cache + one forward's activations and logits (+ the FP teacher's
//               weights when IntactKV is calibrated)
// Estimates, not promises: good to tens of percent, which is what deciding "hours or minutes,
// fits or not" needs.
#pragma once
#include <cstdint>
#include <string>

#include "exp/plan.h"
#include "model/config.h"
#include "model/weights.h"

namespace ikv::exp {

// Perplexity runs layer-major (eval::PerplexityOptions::layer_major) by itself when the decoder
// layers read in place from the checkpoint take more than this share of the memory available: the
// rest is for the KV cache, activations, logits and the head.
inline constexpr double kLayerMajorShare = 0.75;
bool layer_major_needed(double mapped_layer_bytes, double available_bytes);
// The same for loaded weights and the memory available now; `why` then says so with the numbers.
bool layer_major_needed(const model::Weights& w, std::string* why = nullptr);

// Useful flops per token of a window of ctx tokens: 2 per weight of every linear and the head,
// plus QKᵀ and PV over the causal half of the window.
double flops_per_token(const model::Config& c, int64_t ctx);

// GEMM rates of this machine's kernels at a model's widths (GFLOP/s, all threads), measured by
// running each weight form once on a small synthetic matrix (about a second in all).
struct MachineRates {
  double dense_f32 = 0;  // fp32 compute on 16-bit storage (the default dtype)
  double dense_bf16 = 0;
  double packed_f32 = 0;  // W4 g128 codes, fp32 inputs
  double packed_q8 = 0;   // W4 g128 codes, int8-block inputs
  int64_t available_bytes = 0;  // MemAvailable now
};
MachineRates measure_rates(const model::Config& c);

// What a model's checkpoint holds: its shapes and the bytes per stored weight (2 for bf16/fp16,
// 4 for fp32), from the files' sizes.
struct ModelShape {
  model::Config config;
  double bytes_per_weight = 2;
};
ModelShape model_shape(const std::string& model_dir);

// rates.available_bytes decides `fits`; the GEMM rates only the time (0 where unmeasured: time
// is then not estimated).
CellEstimate estimate_cell(const Cell& cell, const ModelShape& model, const MachineRates& rates);

// estimate_cell for a plan's cells: each model's shape read once (from data_root), the rates
// measured once per model when `measure_rates` (else memory only: `ikv-eval run` checks fit
// without spending a second on a probe).
EstimateFn plan_estimator(const std::string& data_root, bool measure_rates);
// Error naming the first cell to run (not is_done) that will not fit in the memory available,
// with the estimate and what is available.
void refuse_oversized_cells(const Plan& plan, const EstimateFn& estimate,
                            const std::function<bool(const std::string& key)>& is_done);

}  // namespace ikv::exp
