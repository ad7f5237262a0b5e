// Layer reconstruction error of quantized linears: how far X·W_effᵀ lands from X·W_fpᵀ, relative to
// ‖X·W_fpᵀ‖_F, where X holds the FP model's inputs to that linear on held-out tokens and W_eff is the
// weight the quantized linear applies, in the FP model's coordinates. The number GPTQ and AWQ are
// meant to lower against RTN (issue #8's table, `ikv-eval quant-error`).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/linear.h"
#include "model/weights.h"
#include "quant/awq.h"

namespace ikv::quant {

// The weight a (quantized) linear applies, dense [out, in] in input-channel order (dequantized,
// un-permuted for GPTQ act-order: kernels::linear_dense_weight), with AWQ's fold undone when given:
// W_eff = diag(row_scale) · W · diag(1 / in_scale).
std::vector<float> effective_weight(const kernels::Linear& l, const LinearFold* fold = nullptr);

// ‖X Aᵀ − X Bᵀ‖_F / ‖X Aᵀ‖_F for X [n, in] and A (the reference), B [out, in], in double.
double relative_output_error(const float* X, int64_t n, int64_t in, const float* A, const float* B, int64_t out);

// error[m][i]: relative_output_error of every decoder linear i of fp (model::named_linears order) with
// the held-out inputs X the FP model feeds it on `heldout` (each sequence run alone, through
// Engine::layer_forward), A = fp's weight and B = weights[m][i] (effective_weight of method m).
std::vector<std::vector<double>> reconstruction_errors(const model::Weights& fp,
                                                       const std::vector<std::vector<int32_t>>& heldout,
                                                       const std::vector<std::vector<std::vector<float>>>& weights);

}  // namespace ikv::quant
