// A LLaMA model's weights in compute form. Weights stay as stored: the linears (kernels::Linear,
// which quantizers replace with packed low-bit matrices in place) and the embedding of a bf16 or
// fp16 checkpoint are read in place from the memory-mapped files; norm weights and biases are fp32.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "kernels/hadamard.h"
#include "kernels/linear.h"
#include "model/config.h"
#include "model/rotation.h"

namespace ikv::model {

// The token embedding [vocab, dim] as stored: a bf16/fp16 checkpoint's table read in place, or fp32
// rows in memory (fp32 checkpoints, llama2.c files, QuaRot's rotated table). Lookups hand out
// exact fp32 rows, so only the rows a run uses are ever read.
struct Embedding {
  int64_t vocab = 0, dim = 0;
  std::vector<float> f32;    // [vocab, dim] when held in fp32
  kernels::HalfMatrix half;  // otherwise (half.data set)
  // Set on a QuaRot-rotated model: every row is multiplied by it as it is looked up (E ← E Q
  // without a rotated copy of the table).
  std::shared_ptr<const kernels::HadamardTransform> rotate;

  Embedding() = default;
  Embedding(std::vector<float> table, int64_t vocab, int64_t dim);
  Embedding(kernels::HalfMatrix table, int64_t vocab, int64_t dim);
  bool is_half() const { return half.data != nullptr; }
  // Row `token` (0 <= token < vocab, unchecked) as fp32 into out[0, dim), rotated if rotate is set.
  void row(int64_t token, float* out) const;
  // The whole table as fp32, as rows are looked up (a copy).
  std::vector<float> to_f32() const;
  // The fp32 table for editing in place: upcast and rotated as looked up, the storage let go.
  std::vector<float>& expand_to_f32();
};

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;  // [dim]
  std::vector<float> q_norm, k_norm;       // [head_dim] (Qwen3 qk_norm); empty = none
  kernels::Linear q, k, v, o;              // q [q_dim, dim], k/v [kv_dim, dim], o [dim, q_dim]
  kernels::Linear gate, up, down;          // gate/up [hidden, dim], down [dim, hidden]
};

struct Weights {
  Config config;
  Embedding embed;           // [vocab, dim]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [dim]
  kernels::Linear lm_head;        // [vocab, dim]; the embedding's storage when tied
  std::string source;             // folder or file it was read from
  std::string fingerprint;        // sha256 over the config and weight files' digests
  // Set when QuaRot rotated the model (quant/quarot.h): the rotations the engine applies online,
  // and that map FP residual streams and IntactKV prefixes into the model's coordinates.
  std::shared_ptr<const model::Rotation> rotation;
};

enum class ComputeType { F32, BF16 };

// Loads an HF folder (config.json + model.safetensors or model.safetensors.index.json shards,
// F32/F16/BF16) or a llama2.c .bin file. Every inconsistency is an Error naming file and tensor.
// BF16/F16 linears and embeddings are views of the mapped shards (the weights' pages are read on
// first use and counted in the resident set from then on); F32/F64 tensors and llama2.c files are
// converted into fp32 memory.
Weights load_model(const std::string& path);
// What load_model would check (config, every tensor's presence, shape and float dtype, shard
// headers against their file sizes) and the fingerprint, without converting any tensor.
struct ModelProbe {
  Config config;
  std::string fingerprint;
};
ModelProbe probe_model(const std::string& path);
// The bf16 compute option: dense linears compute in bf16 on bf16 weights (stored bf16 ones as they
// are, fp16/fp32 ones converted once; oneDNN rounds their inputs to bf16), packed ones keep their
// exact codes and take bf16 inputs (kernels::Packed::rounding).
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
// Decoder layer `layer`'s part of named_linears (q, k, v, o, gate, up, down).
std::vector<NamedLinear> layer_linears(Weights& w, size_t layer);

// Takes decoder layer `layer`'s weights that are views of the mapped checkpoint out of the
// resident set (io::release_held); they stay usable and are read from the file again when next
// used. Layer-major evaluation calls it when it is done with a layer, so that its peak memory is
// one layer's weights, not the model's.
void release_layer_pages(const Weights& w, int64_t layer);
// Bytes of the decoder layers' weights that are read in place from the mapped checkpoint.
int64_t mapped_layer_bytes(const Weights& w);

}  // namespace ikv::model
