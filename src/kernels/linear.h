// A linear layer y = x · Wᵀ + b (nn.Linear orientation, W is [out, in]): its weight in exactly one of
// the forms a run computes with, and the quantization its input gets first.
//
// The forms are the kernel families, each with its own storage, and a layer holds one at a time:
//   DenseF32   an fp32 weight owned in memory (gemm_f32): fp32 checkpoints, llama2.c files, and the
//              only form quantizers, AWQ's scale fold and QuaRot's rotation edit in place
//              (dense_f32_weight; expand_to_f32 makes it from a 16-bit weight, one layer at a time).
//   DenseHalf  a bf16 or fp16 weight as the checkpoint stores it, read in place from the mapped
//              file (kernels/half_matrix.h). fp32 compute upcasts panels inside the GEMM
//              (gemm_f32_half: bit for bit gemm_f32 on the upcast weight); --dtype bf16 runs
//              oneDNN's bf16 matmul on the stored bf16 weight (gemm_bf16; the input rounded to
//              bf16), after converting an fp16 or fp32 weight to bf16 once.
//   Packed     low-bit codes from a quantizer or an artifact (packed_matmul). The codes stay exact
//              under every compute dtype, which only changes how the input is rounded; beside them
//              sit what exists only because of those codes: GPTQ act-order's column order, the q8
//              kernel's tiled copy and the integer GEMM's int8 copy. They live in Packed, so they
//              go when the codes are replaced and cannot outlive or precede them.
// Activation quantization (QuaRot W4A4) applies to the input whatever the form, so it sits beside
// the weight rather than in it.
//
// Each form is made one way (make_dense/set_dense, make_dense_half, set_packed, to_bf16,
// use_q8_inputs, set_act_quant), so no caller sets a field whose meaning depends on another. Read
// the forms with std::get_if / std::holds_alternative, or dense_f32_weight where only fp32 will do.
#pragma once
#include <cstdint>
#include <memory>
#include <variant>
#include <vector>

#include "kernels/half_matrix.h"
#include "kernels/packed_matmul.h"
#include "kernels/q8_tiles.h"

namespace ikv::kernels {

struct Int8Matrix;

struct DenseF32 {
  std::vector<float> w;  // [out, in]
};

struct DenseHalf {
  HalfMatrix w;  // [out, in]
  // kFp32: fp32 compute on the exactly upcast weight; kBf16 (bf16 storage only): oneDNN's bf16
  // matmul, the input rounded to bf16.
  Activations compute = Activations::kFp32;
};

struct Packed {
  // The codes in the row layout; null under q8 on a VNNI CPU, where q8_tiles holds them instead
  // (packed_codes rebuilds this layout where one is needed).
  std::shared_ptr<const PackedMatrix> m;
  // GPTQ act-order: packed column j multiplies input channel in_perm[j] (empty = identity). The
  // input is gathered into that order before the packed matmul; groups stay consecutive columns.
  std::vector<int32_t> in_perm;
  // What the input is rounded to before the product: kBf16 with bf16 compute (the packed
  // counterpart of DenseHalf's bf16 compute), kQ8 for int8 blocks (dtype q8).
  Activations rounding = Activations::kFp32;
  // With kQ8 on a VNNI CPU: the codes in the q8 kernel's layout, which every product then takes.
  // They replace m (the same bytes in another order), so q8 weights take the memory of the codes
  // once; backward passes, dequantization and saving rebuild the row layout (packed_codes).
  std::shared_ptr<const Q8Tiles> q8_tiles;
  // With activation quantization on and symmetric per-channel codes: the codes as int8 with their
  // scales, so the product is the integer GEMM (kernels/int8_gemm.h).
  std::shared_ptr<const Int8Matrix> int8;
};

// Per-token symmetric quantization of the input to `bits` with clip ratio `clip`
// (kernels/int8_gemm.h) before the product; 16 = off. The quantized input takes the integer GEMM
// when the weight has an int8 copy, else it is dequantized and takes the weight's usual path.
// static_scale > 0: one scale for every token instead (static per-tensor scales, calibrated
// beforehand; clip does not apply).
struct ActQuant {
  int bits = 16;
  float clip = 1.0f;
  float static_scale = 0;
};

// A weight held out of the quantization (a super weight, Yu et al. 2024): the codes keep their
// value at [row, col] (quantized with it left out of its group's range), and the product adds
// (value − stored)·x[col] to y[row], so the layer computes with the exact FP value. The side
// product takes the input before activation quantization: it is an FP path beside the codes.
struct HeldOutWeight {
  int64_t row = 0, col = 0;
  float value = 0;  // the exact weight
  float delta = 0;  // value − the weight as stored (dequantized)
};

struct Linear {
  int64_t out = 0, in = 0;
  std::variant<DenseF32, DenseHalf, Packed> weight;
  ActQuant act_quant;
  std::vector<float> bias;  // [out], added after the product whatever the form; empty = none
  std::vector<HeldOutWeight> held_out;  // exact weights beside packed codes (hold_out_weight)
};

// A dense fp32 layer.
Linear make_dense(std::vector<float> w, int64_t out, int64_t in);
// A dense layer on 16-bit storage with fp32 compute (the form bf16/fp16 checkpoints load in).
Linear make_dense_half(HalfMatrix w, int64_t out, int64_t in);
// Replaces the weight by dense fp32 [out, in].
void set_dense(Linear& l, std::vector<float> w);
// The weight as dense fp32 for editing in place: a 16-bit weight is upcast (its storage let go),
// an fp32 one returned as it is; ikv::Error for packed codes. Quantizers that edit call it one
// layer at a time, so a model is never all fp32 at once.
std::vector<float>& expand_to_f32(Linear& l);
// Replaces the weight by packed codes (quantizers, artifacts); in_perm for GPTQ act-order. The new
// form has fp32 inputs and no tiled or int8 copy: the compute dtype and activation quantization
// apply to packed weights, after packing.
void set_packed(Linear& l, std::shared_ptr<const PackedMatrix> m, std::vector<int32_t> in_perm = {});
// bf16 compute: a dense weight becomes DenseHalf in bf16 with bf16 compute (a bf16 one as it is
// stored, fp16 and fp32 ones converted once, round to nearest even); packed codes take
// bf16-rounded inputs.
void to_bf16(Linear& l);
// q8 compute: packed codes take int8-block inputs, tiled for the VNNI kernel where it runs and
// covers the matrix (the tiles then replace the row layout); dense weights stay as they are.
void use_q8_inputs(Linear& l);
// Keeps weight [row, col] exact at `value` beside packed codes (HeldOutWeight); ikv::Error for any
// other form. set_packed drops them with the codes they correct.
void hold_out_weight(Linear& l, int64_t row, int64_t col, float value);
// Activation quantization to `bits` (16 = off) with clip ratio `clip`; packed symmetric
// per-channel codes get their int8 copy for the integer GEMM (and lose it when bits is 16).
void set_act_quant(Linear& l, int bits, float clip);

// A packed weight's codes in the row layout: m, or rebuilt from the q8 tiles (a new copy each call).
std::shared_ptr<const PackedMatrix> packed_codes(const Packed& p);

// The dense fp32 weight, for code that edits it in place; ikv::Error for any other form.
std::vector<float>& dense_f32_weight(Linear& l);
const std::vector<float>& dense_f32_weight(const Linear& l);

// Y[M, out] = X[M, in] · Wᵀ (+ bias) by the layer's form.
void linear_forward(const Linear& layer, const float* X, int64_t M, float* Y);
// The same with activation quantization `act` in place of the layer's own (static scales that
// depend on the run, not on the weights).
void linear_forward(const Linear& layer, const float* X, int64_t M, float* Y, const ActQuant& act);
// Y[m, :] += bias for M rows (nothing when bias is empty).
template <typename T>
void add_bias(const std::vector<float>& bias, int64_t M, T* Y) {
  const int64_t n = static_cast<int64_t>(bias.size());
  for (int64_t m = 0; m < M && n; ++m)
    for (int64_t j = 0; j < n; ++j) Y[m * n + j] += static_cast<T>(bias[j]);
}
// The weight as dense fp32 [out, in] in input-channel order (dequantized and un-permuted if packed,
// held-out weights exact): for references and backward passes.
std::vector<float> linear_dense_weight(const Linear& layer);

}  // namespace ikv::kernels
