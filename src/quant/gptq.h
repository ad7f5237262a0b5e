// GPTQ (Frantar et al., 2023): quantize a weight matrix column by column, each time spreading the
// rounding error over the not-yet-quantized columns through the inverse Hessian of the layer's
// input, H = 2 X Xᵀ. Group scales/zeros use the RTN numerics (quant/rtn.h), fp16-rounded, chosen on
// the fly when a group's first column comes up. The result is a PackedMatrix like RTN's, so every
// kernel and task runs unchanged; act-order adds an input permutation (kernels::Packed::in_perm).
//
// Numerics follow the reference implementation (gptq.py, fasterquant) with these stated choices:
//  - dead inputs (diag H = 0) get H_ii = 1 and a zeroed weight column; damping adds
//    damp · mean(diag H) to the diagonal; H⁻¹'s upper Cholesky factor U (H⁻¹ = UᵀU) is computed in
//    double, and the whole column sweep runs in double (the reference uses fp32 on GPUs). U is
//    obtained from one Cholesky of H with rows/columns reversed and a triangular inverse: the same
//    matrix as the reference's cholesky → cholesky_inverse → cholesky(upper), at half the flops.
//  - a group's scale/zero come from the group's *current* weights (all error feedback so far
//    applied) when its first column is reached, also when the group straddles a lazy-batch block
//    (the reference reads the block-stale weights there; identical when block % group == 0), so
//    the result does not depend on the block size. Per-channel (group -1) is one group per row,
//    i.e. params from the whole row up front.
//  - the fp32 RTN scale is rounded to fp16 *before* the zero point and codes are chosen, and the
//    error fed back is w − (q − zero)·scale16: the packed matrix dequantizes to exactly the weights
//    GPTQ compensated for.
//  - act-order sorts columns by decreasing diag H (stable) and keeps "static groups in permuted
//    order": packed column j is input channel perm[j] and its group is j / group, so groups stay
//    consecutive packed columns (the packed format is unchanged) and the kernels gather the input
//    through perm (the reference's g_idx = perm-position / group, stored the other way round).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/weights.h"
#include "quant/layerwise.h"
#include "kernels/packed_matrix.h"

namespace ikv::quant {

struct GptqOptions {
  kernels::QuantSpec spec;            // bits, group (-1 = per channel), sym
  double damp = 0.01;        // dampening: λ = damp · mean(diag H) added to the diagonal
  int64_t block = 128;       // columns per lazy-batch block
  bool act_order = false;    // quantize columns in order of decreasing diag(H)
  // quantize_model_gptq calls it with a layer's index before it runs the layer (QuaRot rotates the
  // layer there, so that only one layer at a time is expanded to fp32).
  std::function<void(int64_t layer)> before_layer;
};

struct GptqMatrix {
  kernels::PackedMatrix packed;         // codes of W[:, perm] when act_order, else of W
  std::vector<int32_t> perm;   // empty, or the column order: packed column j is input channel perm[j]
};

// What GPTQ needs from H alone, shared by the linears that read the same input (q/k/v, gate/up).
struct GptqHessian {
  int64_t cols = 0;
  std::vector<int32_t> perm;   // act_order column order, empty otherwise
  std::vector<uint8_t> dead;   // [cols] by input channel: 1 where diag H = 0 (weight column zeroed)
  std::vector<double> u;       // [cols, cols] row-major, upper: H⁻¹ = UᵀU in quantization order
};

// H [cols, cols] row-major, symmetric (any positive scale: GPTQ is invariant to it). Throws
// ikv::Error naming `what` on a bad size, a non-finite entry, or an H that is not positive definite
// after dampening.
GptqHessian gptq_prepare(const std::vector<double>& H, int64_t cols, const GptqOptions& opt, const std::string& what);

// Quantizes W [rows, cols] (row-major, nn.Linear orientation). Errors name `what`.
GptqMatrix gptq_quantize(const float* W, int64_t rows, int64_t cols, const GptqHessian& h, const GptqOptions& opt,
                         const std::string& what);
// Same with H given directly (gptq_prepare + gptq_quantize).
GptqMatrix gptq_quantize(const float* W, int64_t rows, int64_t cols, const std::vector<double>& H,
                         const GptqOptions& opt, const std::string& what);

// Streams a linear's calibration inputs into H = 2/T Σ x xᵀ over all T tokens seen. Inputs are
// batched (transposed) until `batch_tokens` have arrived, then the lower-triangle tiles of Xᵀ X
// are one fp32 GEMM each (oneDNN), summed in double across batches.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t cols, int64_t batch_tokens = 2048);
  void add(const float* X, int64_t n);  // X [n, cols]
  // The full symmetric H [cols, cols]; empties the accumulator (call once). Throws if no token was
  // added or H was already taken.
  std::vector<double> hessian();
  int64_t tokens() const { return tokens_; }

 private:
  void flush();
  int64_t cols_, cap_, pending_ = 0, tokens_ = 0;
  std::vector<float> xt_;    // pending inputs transposed [cols, cap]
  std::vector<double> sum_;  // Σ x xᵀ, lower triangle valid
};

// The whole model, layer by layer: each layer's linear inputs come from the calibration tokens run
// through the already-quantized layers before it (engine::Engine::layer_forward); all seven
// linears of the layer are quantized from the Hessians of the full-precision layer (GPTQ's
// default, not "true sequential"), then the quantized layer's output feeds the next layer.
void quantize_model_gptq(model::Weights& w, const CalibrationTokens& calib, const GptqOptions& opt,
                         const LayerProgress& progress = {});

}  // namespace ikv::quant
