// A linear layer's weight in whichever form the run uses: dense fp32, dense bf16, or a packed
// low-bit matrix. y = x · Wᵀ (nn.Linear orientation, W is [out, in]).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/packed_matmul.h"
#include "kernels/q8_tiles.h"

namespace ikv::kernels {

struct Int8Matrix;

struct Linear {
  int64_t out = 0, in = 0;
  std::vector<float> w;                                 // dense fp32 [out, in]; empty once packed
  std::vector<uint16_t> w_bf16;                         // bf16 [out, in] when compute dtype is bf16
  std::shared_ptr<const kernels::PackedMatrix> packed;    // low-bit weights when quantized
  // What a packed layer's input is rounded to before the product (the codes stay exact): kBf16
  // with bf16 compute, the packed counterpart of w_bf16; kQ8 for int8 blocks (dtype q8).
  Activations packed_input = Activations::kFp32;
  // With q8 inputs on a VNNI CPU: the packed codes again in the q8 kernel's layout, which every
  // product then takes (a second copy of the codes; `packed` still serves backward passes,
  // dequantization and saving).
  std::shared_ptr<const Q8Tiles> q8_tiles;
  // GPTQ act-order: packed column j multiplies input channel in_perm[j] (empty = identity). The
  // input is gathered into that order before the packed matmul; groups stay consecutive columns.
  std::vector<int32_t> in_perm;
  // Activation quantization (QuaRot W4A4): the input is quantized per token, symmetric, to act_bits
  // with clip ratio act_clip (kernels/int8_gemm.h) before the matmul; 16 = off. With w_int8 (the
  // packed symmetric per-channel codes as int8) the matmul is the integer GEMM, else the dequantized
  // input takes the weight's usual path.
  int act_bits = 16;
  float act_clip = 1.0f;
  std::shared_ptr<const Int8Matrix> w_int8;
};

// Y[M, out] = X[M, in] · Wᵀ using the fastest form the layer holds.
void linear_forward(const Linear& layer, const float* X, int64_t M, float* Y);
// The weight as dense fp32 [out, in] in input-channel order (dequantized and un-permuted if packed):
// for references and backward passes.
std::vector<float> linear_dense_weight(const Linear& layer);

}  // namespace ikv::kernels
