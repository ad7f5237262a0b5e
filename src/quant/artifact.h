// A quantized model on disk (*.quant.safetensors): the packed decoder linears (and AWQ's decoder
// norms); embeddings, the other norms and lm_head stay those of the FP checkpoint it was made from.
//   tensors  {linear name}.codes  U32 [rows, row_words * 16]   (PackedMatrix::codes, lanes in order)
//            {linear name}.scales F16 [rows, groups_per_row]
//            {linear name}.zeros  U8  [packed zero bytes]       (asymmetric only)
//            {linear name}.perm   I32 [cols]                     (GPTQ act-order only: packed column j
//                                                                 reads input channel perm[j])
//            model.layers.{l}.input_layernorm.weight, ….post_attention_layernorm.weight  F32 [dim]
//                                                                (AWQ only: its scales are folded in)
//   metadata ikv_quant_format "1", method, bits, group, sym, source_fingerprint;
//            QuaRot: rotation "quarot", rotation_seed (loading rotates the FP model with that seed
//            first: its embedding, norms and lm_head are not stored), act_bits, act_clip
// Loading checks every shape against the model and the layout the packed format implies, and the
// fingerprint of the FP model it is applied to.
//
// Every shape follows from the model's and the quantizer's settings alone (kernels::packed_sizes),
// so the writer puts the header first and appends a decoder layer's tensors as the quantizer
// finishes it: the file costs no memory beyond the layer being written (nothing is collected to
// the end), so a model whose packed form exceeds memory could be written. Tensors go in named_linears order, a layer's
// seven linears each as codes, scales, zeros, perm; then AWQ's norms, layer by layer.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "kernels/packed_matrix.h"
#include "model/weights.h"

namespace ikv::quant {

// What the file declares besides the model's shapes, fixed before the first layer is quantized.
struct ArtifactLayout {
  kernels::QuantSpec spec;                // every decoder linear's packing (QuaRot: per channel, sym)
  bool act_order = false;                 // every linear has its .perm (GPTQ act-order)
  std::optional<uint64_t> rotation_seed;  // QuaRot: the seed rotate_ends used
  int act_bits = 16;                      // QuaRot's activation quantization (16 = off)
  float act_clip = 1;
};

// Writes a quantized model's artifact a decoder layer at a time. The constructor declares every
// tensor from w's shapes (w may still be unquantized) and writes the header to PATH.tmp; settings
// become metadata as given ("method" "awq" also stores the decoder norms). write_layer(w, l)
// appends layer l's packed linears, layers in order 0, 1, ...; each must be packed exactly as
// declared (an Error naming the linear otherwise, before any of the layer is written). finish(w)
// appends AWQ's norms, checks the activation quantization against the metadata and renames the
// file into place. Destroyed unfinished (an interrupted quantization), it leaves no file at PATH.
class QuantizedArtifactWriter {
 public:
  QuantizedArtifactWriter(model::Weights& w, const ArtifactLayout& layout, const std::string& path,
                          const std::map<std::string, std::string>& settings);
  void write_layer(model::Weights& w, int64_t layer);
  void finish(model::Weights& w);
  // Codes, scales and zero points written so far (kernels::packed_bytes of the linears).
  size_t packed_bytes() const { return packed_bytes_; }

 private:
  struct DeclaredLinear {
    std::string name;
    int64_t rows = 0, cols = 0, group = 0;  // group resolved (cols for per-channel)
    kernels::PackedSizes sizes;
  };
  void check_packed(const DeclaredLinear& d, const kernels::PackedMatrix& p, size_t perm_size) const;

  ArtifactLayout layout_;
  std::string path_;
  bool awq_norms_ = false;
  std::vector<std::vector<DeclaredLinear>> layers_;
  int64_t next_layer_ = 0;
  size_t packed_bytes_ = 0;
  std::unique_ptr<io::SafetensorsWriter> out_;
};

// The layout of an already quantized model's artifact (its packed linears, rotation and activation
// quantization); an Error naming PATH and the linear when some linear is not packed.
ArtifactLayout quantized_layout(model::Weights& w, const std::string& path);
// Writes the artifact of a quantized model at once: QuantizedArtifactWriter over every layer.
void save_quantized(model::Weights& w, const std::string& path, const std::map<std::string, std::string>& settings);
// Replaces w's decoder linears by the file's packed matrices; returns the file's settings.
std::map<std::string, std::string> load_quantized(model::Weights& w, const std::string& path);

}  // namespace ikv::quant
