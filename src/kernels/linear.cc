#include "kernels/linear.h"

#include "io/dtype.h"
#include "io/error.h"
#include "kernels/gemm.h"
#include "kernels/int8_gemm.h"
#include "kernels/packed_matmul.h"
#include "kernels/packed_matrix.h"

namespace ikv::kernels {

void linear_forward(const Linear& layer, const float* X, int64_t M, float* Y) {
  const int64_t K = layer.in;
  std::vector<float> xp;  // the input as the weight reads it (gathered, or fake-quantized)
  if (layer.packed && !layer.in_perm.empty()) {
    xp.resize(static_cast<size_t>(M * K));
#pragma omp parallel for if (M * K > (1 << 16))
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < K; ++j) xp[m * K + j] = X[m * K + layer.in_perm[j]];
    X = xp.data();
  }
  if (layer.act_bits < 16) {
    std::vector<int8_t> xq(static_cast<size_t>(M * K));
    std::vector<float> sx(M);
    quantize_per_token(X, M, K, layer.act_bits, layer.act_clip, xq.data(), sx.data());
    if (layer.w_int8) return int8_gemm(xq.data(), sx.data(), M, *layer.w_int8, Y);
    xp.resize(static_cast<size_t>(M * K));
    dequantize_per_token(xq.data(), sx.data(), M, K, xp.data());
    X = xp.data();
  }
  if (layer.q8_tiles && q8_tiles_runs_here()) return q8_tiles_matmul(*layer.q8_tiles, X, M, Y);
  if (layer.packed)
    return packed_matmul(*layer.packed, X, M, Y, Isa::kAuto, layer.packed_input);
  if (!layer.w_bf16.empty())
    gemm_bf16(X, M, layer.in, layer.w_bf16.data(), layer.out, Y);
  else
    gemm_f32(X, M, layer.in, layer.w.data(), layer.out, Y);
}

std::vector<float> linear_dense_weight(const Linear& layer) {
  if (layer.packed) {
    std::vector<float> w(static_cast<size_t>(layer.out * layer.in));
    kernels::dequantize(*layer.packed, w.data());
    if (layer.in_perm.empty()) return w;
    std::vector<float> unperm(w.size());
    for (int64_t n = 0; n < layer.out; ++n)
      for (int64_t j = 0; j < layer.in; ++j) unperm[n * layer.in + layer.in_perm[j]] = w[n * layer.in + j];
    return unperm;
  }
  if (!layer.w.empty()) return layer.w;
  std::vector<float> w(layer.w_bf16.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = io::bf16_to_fp32(layer.w_bf16[i]);
  return w;
}

}  // namespace ikv::kernels
