// A LLaMA model's weights in compute form. Norm weights and embeddings are fp32; the linears are
// kernels::Linear so that quantizers can replace them with packed low-bit matrices in place.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "kernels/linear.h"
#include "model/config.h"
#include "model/rotation.h"

namespace ikv::model {

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;  // [dim]
  std::vector<float> q_norm, k_norm;       // [head_dim] (Qwen3 qk_norm); empty = none
  kernels::Linear q, k, v, o;              // q [q_dim, dim], k/v [kv_dim, dim], o [dim, q_dim]
  kernels::Linear gate, up, down;          // gate/up [hidden, dim], down [dim, hidden]
};

struct Weights {
  Config config;
  std::vector<float> embed;  // [vocab, dim]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [dim]
  kernels::Linear lm_head;        // [vocab, dim]; a copy of embed when tied
  std::string source;             // folder or file it was read from
  std::string fingerprint;        // sha256 over the config and weight files' digests
  // Set when QuaRot rotated the model (quant/quarot.h): the rotations the engine applies online,
  // and that map FP residual streams and IntactKV prefixes into the model's coordinates.
  std::shared_ptr<const model::Rotation> rotation;
};

enum class ComputeType { F32, BF16 };

// Loads an HF folder (config.json + model.safetensors or model.safetensors.index.json shards,
// F32/F16/BF16) or a llama2.c .bin file. Every inconsistency is an Error naming file and tensor.
Weights load_model(const std::string& path);
// What load_model would check (config, every tensor's presence, shape and float dtype, shard
// headers against their file sizes) and the fingerprint, without converting any tensor.
struct ModelProbe {
  Config config;
  std::string fingerprint;
};
ModelProbe probe_model(const std::string& path);
// The bf16 compute option: dense linears get bf16 weights (oneDNN rounds their inputs to bf16),
// packed ones keep their exact codes and take bf16 inputs (kernels::Packed::rounding).
void convert_linears_to_bf16(Weights& w);
// The q8 option: packed linears take their inputs as int8 blocks (kernels::Activations::kQ8), the
// VNNI kernel's format, with their codes tiled for it (kernels::Q8Tiles); dense linears stay fp32.
void use_q8_inputs(Weights& w);

// The linears of a model by their HF names, in a fixed order (for quantizers and reports).
struct NamedLinear {
  std::string name;
  kernels::Linear* linear;
};
std::vector<NamedLinear> named_linears(Weights& w);

}  // namespace ikv::model
