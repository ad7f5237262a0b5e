// QuantizedArtifactWriter and save_quantized (quant/artifact.h): the one way an artifact is written.
#include <cstdio>
#include <sstream>

#include "io/error.h"
#include "kernels/linear.h"
#include "quant/artifact.h"

namespace ikv::quant {
namespace {

const char* kNorms[2] = {"input_layernorm", "post_attention_layernorm"};

std::string norm_name(size_t layer, int which) {
  return "model.layers." + std::to_string(layer) + "." + kNorms[which] + ".weight";
}

// "64 x 172, 3 bits, group 4, asym: 64 x 12 code words, 2752 scales, 1376 zero bytes, 172 perm entries"
std::string describe(int64_t rows, int64_t cols, int bits, int64_t group, bool sym, size_t code_words, size_t scales,
                     size_t zero_bytes, size_t perm) {
  std::ostringstream s;
  s << rows << " x " << cols << ", " << bits << " bits, group " << group << (sym ? ", sym: " : ", asym: ") << code_words
    << " code words, " << scales << " scales, " << zero_bytes << " zero bytes, " << perm << " perm entries";
  return s.str();
}

}  // namespace

QuantizedArtifactWriter::QuantizedArtifactWriter(model::Weights& w, const ArtifactLayout& layout, const std::string& path,
                                                 const std::map<std::string, std::string>& settings)
    : layout_(layout), path_(path) {
  if (auto it = settings.find("method"); it != settings.end() && it->second == "awq") awq_norms_ = true;
  const kernels::QuantSpec& spec = layout.spec;
  std::vector<io::TensorToWrite> tensors;
  int64_t group = -1;  // per-channel (every matrix one group per row) unless some matrix has narrower groups
  for (size_t l = 0; l < w.layers.size(); ++l) {
    std::vector<DeclaredLinear>& declared = layers_.emplace_back();
    for (const model::NamedLinear& nl : model::layer_linears(w, l)) {
      const kernels::Linear& lin = *nl.linear;
      kernels::validate_spec(spec, lin.in, nl.name);  // before the file exists
      DeclaredLinear d{nl.name, lin.out, lin.in, spec.group == -1 ? lin.in : spec.group,
                       kernels::packed_sizes(lin.out, lin.in, spec)};
      const int64_t code_words = d.rows * d.sizes.row_words, scales = d.rows * d.sizes.groups_per_row;
      tensors.push_back({d.name + ".codes", io::DType::U32, {d.rows, d.sizes.row_words * 16}, nullptr,
                         static_cast<size_t>(code_words) * sizeof(kernels::CodeWord)});
      tensors.push_back({d.name + ".scales", io::DType::F16, {d.rows, d.sizes.groups_per_row}, nullptr,
                         static_cast<size_t>(scales) * 2});
      if (!spec.sym)
        tensors.push_back({d.name + ".zeros", io::DType::U8, {d.sizes.zero_bytes}, nullptr,
                           static_cast<size_t>(d.sizes.zero_bytes)});
      if (layout.act_order)
        tensors.push_back({d.name + ".perm", io::DType::I32, {d.cols}, nullptr, static_cast<size_t>(d.cols) * 4});
      if (d.group != d.cols) group = d.group;
      declared.push_back(std::move(d));
    }
  }
  // AWQ divides the decoder norms by its scales, so they belong to the quantized model.
  if (awq_norms_)
    for (size_t l = 0; l < w.layers.size(); ++l)
      for (int which : {0, 1})
        tensors.push_back({norm_name(l, which), io::DType::F32, {w.config.dim}, nullptr, w.config.dim * 4ul});
  std::map<std::string, std::string> meta = settings;
  meta["ikv_quant_format"] = "1";
  meta["bits"] = std::to_string(spec.bits);
  meta["group"] = std::to_string(group);
  meta["sym"] = spec.sym ? "1" : "0";
  meta["source_fingerprint"] = w.fingerprint;
  if (layout.rotation_seed) {  // QuaRot: embedding, norms and lm_head are not stored; loading re-rotates them
    meta["rotation"] = "quarot";
    meta["rotation_seed"] = std::to_string(*layout.rotation_seed);
  }
  if (layout.act_bits < 16) {
    char clip[32];
    std::snprintf(clip, sizeof clip, "%.9g", layout.act_clip);
    meta["act_bits"] = std::to_string(layout.act_bits);
    meta["act_clip"] = clip;
  }
  out_ = std::make_unique<io::SafetensorsWriter>(path, tensors, meta);
}

void QuantizedArtifactWriter::check_packed(const DeclaredLinear& d, const kernels::PackedMatrix& p,
                                           size_t perm_size) const {
  const kernels::QuantSpec& spec = layout_.spec;
  const size_t code_words = d.rows * d.sizes.row_words, scales = d.rows * d.sizes.groups_per_row,
               zero_bytes = d.sizes.zero_bytes, perm = layout_.act_order ? d.cols : 0;
  if (p.rows != d.rows || p.cols != d.cols || p.bits != spec.bits || p.group != d.group || p.sym != spec.sym ||
      p.codes.size() != code_words || p.scales.size() != scales || p.zeros.size() != zero_bytes || perm_size != perm)
    fail(path_, ": ", d.name, " is packed as ",
         describe(p.rows, p.cols, p.bits, p.group, p.sym, p.codes.size(), p.scales.size(), p.zeros.size(), perm_size),
         "; the header declares ",
         describe(d.rows, d.cols, spec.bits, d.group, spec.sym, code_words, scales, zero_bytes, perm));
}

void QuantizedArtifactWriter::write_layer(model::Weights& w, int64_t layer) {
  if (!out_) fail(path_, ": layer ", layer, " written after finish (or after a failed write)");
  const int64_t n_layers = static_cast<int64_t>(layers_.size());
  if (static_cast<int64_t>(w.layers.size()) != n_layers)
    fail(path_, ": a model of ", w.layers.size(), " layers written to a header of ", n_layers);
  if (layer != next_layer_)
    fail(path_, ": layer ", layer, " written out of order (layers go 0..", n_layers - 1, "; layer ", next_layer_,
         " is next)");
  if (layout_.rotation_seed.has_value() != (w.rotation != nullptr) ||
      (w.rotation && w.rotation->seed != *layout_.rotation_seed))
    fail(path_, ": the model's rotation (", w.rotation ? "seed " + std::to_string(w.rotation->seed) : "none",
         ") is not the header's (", layout_.rotation_seed ? "seed " + std::to_string(*layout_.rotation_seed) : "none",
         ")");
  // Every linear is checked before any is written, so a refused layer leaves the stream as it was.
  const std::vector<model::NamedLinear> linears = model::layer_linears(w, layer);
  const std::vector<DeclaredLinear>& declared = layers_[layer];
  std::vector<std::shared_ptr<const kernels::PackedMatrix>> codes;  // kept alive until written
  std::vector<const std::vector<int32_t>*> perms;
  for (size_t i = 0; i < linears.size(); ++i) {
    const auto* packed = std::get_if<kernels::Packed>(&linears[i].linear->weight);
    if (!packed) fail(path_, ": ", linears[i].name, " is not quantized; nothing to save");
    codes.push_back(kernels::packed_codes(*packed));
    perms.push_back(&packed->in_perm);
    check_packed(declared[i], *codes.back(), packed->in_perm.size());
  }
  try {
    for (size_t i = 0; i < codes.size(); ++i) {
      const kernels::PackedMatrix& p = *codes[i];
      out_->append(p.codes.data(), p.codes.size() * sizeof(kernels::CodeWord));
      out_->append(p.scales.data(), p.scales.size() * 2);
      out_->append(p.zeros.data(), p.zeros.size());
      out_->append(perms[i]->data(), perms[i]->size() * 4);
      packed_bytes_ += kernels::packed_bytes(p);
    }
  } catch (...) {
    out_.reset();  // a stream cut inside a layer cannot go on: PATH.tmp goes now
    throw;
  }
  ++next_layer_;
}

void QuantizedArtifactWriter::finish(model::Weights& w) {
  if (!out_) fail(path_, ": finished twice");
  if (next_layer_ != static_cast<int64_t>(layers_.size()))
    fail(path_, ": finished after ", next_layer_, " of ", layers_.size(), " layers");
  // QuaRot turns activation quantization on after the last layer; the metadata said it up front.
  for (const model::NamedLinear& nl : model::named_linears(w)) {
    const kernels::ActQuant& act = nl.linear->act_quant;
    const bool on = layout_.act_bits < 16;
    if ((act.bits < 16) != on || (on && (act.bits != layout_.act_bits || act.clip != layout_.act_clip)))
      fail(path_, ": ", nl.name, " quantizes activations to ", act.bits, " bits (clip ", act.clip,
           "); the header declares ", layout_.act_bits, " bits (clip ", layout_.act_clip, ")");
  }
  if (awq_norms_)
    for (size_t l = 0; l < w.layers.size(); ++l)
      for (const std::vector<float>* norm : {&w.layers[l].attn_norm, &w.layers[l].ffn_norm}) {
        if (static_cast<int64_t>(norm->size()) != w.config.dim)
          fail(path_, ": layer ", l, " has a norm of ", norm->size(), " values, not ", w.config.dim);
        out_->append(norm->data(), norm->size() * 4);
      }
  out_->finish();
  out_.reset();
}

ArtifactLayout quantized_layout(model::Weights& w, const std::string& path) {
  ArtifactLayout a;
  a.spec.group = -1;
  for (const model::NamedLinear& nl : model::named_linears(w)) {
    const auto* packed = std::get_if<kernels::Packed>(&nl.linear->weight);
    if (!packed) fail(path, ": ", nl.name, " is not quantized; nothing to save");
    // The row layout where the linear has it (a q8 one is rebuilt; write_layer rebuilds it again).
    const std::shared_ptr<const kernels::PackedMatrix> p = packed->m ? packed->m : kernels::packed_codes(*packed);
    a.spec.bits = p->bits;
    a.spec.sym = p->sym;
    if (p->group != p->cols) a.spec.group = static_cast<int>(p->group);
    if (!packed->in_perm.empty()) a.act_order = true;
  }
  if (w.rotation) a.rotation_seed = w.rotation->seed;
  if (const auto linears = model::named_linears(w); !linears.empty() && linears.front().linear->act_quant.bits < 16) {
    a.act_bits = linears.front().linear->act_quant.bits;
    a.act_clip = linears.front().linear->act_quant.clip;
  }
  return a;
}

void save_quantized(model::Weights& w, const std::string& path, const std::map<std::string, std::string>& settings) {
  QuantizedArtifactWriter out(w, quantized_layout(w, path), path, settings);
  for (int64_t l = 0; l < static_cast<int64_t>(w.layers.size()); ++l) out.write_layer(w, l);
  out.finish(w);
}

}  // namespace ikv::quant
