// QuaRot (Ashkboos et al., 2024): rotate a LLaMA model by orthogonal Hadamard-based matrices so
// that its activations lose their outlier channels and quantize to 4 bits, without changing the
// function the FP model computes. With Q the residual rotation (dim, random signs), H_hd the head
// rotation (head_dim) and H_f the FFN rotation (hidden), in nn.Linear orientation (y = x Wᵀ,
// rotations act on row vectors, x̃ = x Q):
//
//   RMSNorm scales γ are fused into the linears that read the norm (W ← W diag γ, γ ← 1); the norm
//   commutes with Q (‖xQ‖ = ‖x‖), so the residual stream can be carried as x̃ = x Q:
//     embedding             E ← E Q
//     q, k, v, gate, up     W ← W Q              (they read the rotated stream)
//     o, down               W ← Qᵀ W             (they write into it)
//     lm_head               W ← W Q              (after the final norm is fused)
//   per head, V/O           W_v ← blockdiag(H_hd)ᵀ W_v, W_o ← W_o blockdiag(H_hd): the values in the
//                           cache are v H_hd per head, o_proj undoes it
//   down_proj's input       W_down ← W_down H_f, and the engine rotates the input online (a ← a H_f)
//   q and k after RoPE      online, per head: q ← q H_hd, k ← k H_hd (q·k unchanged); the KV-cache
//                           quantizer then sees rotated keys
// The rotated FP model's logits equal the original's to float rounding (tests/quant/test_quarot.cc).
// Embedding and lm_head stay full precision; activation quantization (set_activation_quant)
// applies to the inputs of the seven decoder linears, as in QuaRot. QuaRot's further online
// Hadamard across heads on o_proj's input is not applied (o_proj's input is rotated per head only).
//
// An IntactKV prefix built by the FP model enters a rotated model by the same per-head map
// (kv_to_model): residual rotation leaves K and V unchanged, since q/k/v read x̃ with W Q.
#pragma once
#include <cstdint>

#include "model/weights.h"

namespace ikv::quant {

// The fixed seed of the residual rotation's signs (and of any random orthogonal block).
inline constexpr uint64_t kQuarotSeed = 0;

// Rotates the FP model in place as above and records the rotations in w.rotation. Every decoder
// linear and lm_head must be dense (fp32, or 16-bit as stored with fp32 compute: rotate, then
// quantize). Deterministic for a given seed. The embedding stays as stored and its rows are
// rotated as they are looked up (model::Embedding::rotate); each rotated linear is fp32.
void rotate_model(model::Weights& w, uint64_t seed = kQuarotSeed);
// rotate_model in steps, so that a quantizer can rotate and quantize one decoder layer at a time
// and the model is never all fp32: rotate_ends checks every linear, rotates the head (with the
// final norm fused) and the embedding, and records w.rotation; rotate_layer(w, l) then rotates
// layer l. The model computes its function once every layer is rotated (a layer-by-layer
// quantizer only runs layers it has rotated). With weights = false only the layer's norms and
// output biases change: loading packed QuaRot weights, which replace the linears.
void rotate_ends(model::Weights& w, uint64_t seed = kQuarotSeed);
void rotate_layer(model::Weights& w, int64_t layer, bool weights = true);

// Sets per-token symmetric activation quantization (bits 2..8, or 16 = off; clip in (0, 1]) on every
// decoder linear; those holding packed symmetric per-channel weights get their int8 copy for the
// integer GEMM (kernels/int8_gemm.h).
void set_activation_quant(model::Weights& w, int bits, float clip);

// Rows of the FP model's residual stream [rows, dim] into w's coordinates (x ← x Q; identity when w
// is not rotated): to compare decoder-layer outputs of the FP and a rotated model.
void residual_to_model(const model::Weights& w, float* x, int64_t rows);
// Per-head key or value vectors [rows, head_dim] into w's coordinates (x ← x H_hd), or back with
// inverse; identity when w is not rotated.
void kv_to_model(const model::Weights& w, float* x, int64_t rows, bool inverse = false);

}  // namespace ikv::quant
