// A linear layer's weight in whichever form the run uses: dense fp32, dense bf16, or a packed
// low-bit matrix. y = x · Wᵀ (nn.Linear orientation, W is [out, in]).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace ikv::quant {
struct PackedMatrix;
}

namespace ikv::kernels {

struct Linear {
  int64_t out = 0, in = 0;
  std::vector<float> w;                                 // dense fp32 [out, in]; empty once packed
  std::vector<uint16_t> w_bf16;                         // bf16 [out, in] when compute dtype is bf16
  std::shared_ptr<const quant::PackedMatrix> packed;    // low-bit weights when quantized
  // GPTQ act-order: packed column j multiplies input channel in_perm[j] (empty = identity). The
  // input is gathered into that order before the packed matmul; groups stay consecutive columns.
  std::vector<int32_t> in_perm;
};

// Y[M, out] = X[M, in] · Wᵀ using the fastest form the layer holds.
void linear_forward(const Linear& layer, const float* X, int64_t M, float* Y);
// The weight as dense fp32 [out, in] in input-channel order (dequantized and un-permuted if packed):
// for references and backward passes.
std::vector<float> linear_dense_weight(const Linear& layer);

}  // namespace ikv::kernels
