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
#pragma once
#include <map>
#include <string>

#include "model/weights.h"

namespace ikv::quant {

void save_quantized(model::Weights& w, const std::string& path, const std::map<std::string, std::string>& settings);
// Replaces w's decoder linears by the file's packed matrices; returns the file's settings.
std::map<std::string, std::string> load_quantized(model::Weights& w, const std::string& path);

}  // namespace ikv::quant
