#include "quant/artifact.h"

#include <cmath>
#include <cstring>

#include "io/error.h"
#include "io/safetensors.h"
#include "kernels/packed_matrix.h"
#include "quant/quarot.h"

namespace ikv::quant {
namespace {

// The act-order input permutation of a linear (GPTQ), or empty when the file has none.
std::vector<int32_t> load_perm(const io::SafetensorsFile& f, const std::string& name, int64_t cols,
                               const std::string& path) {
  const io::TensorView* t = f.find(name);
  if (!t) return {};
  io::expect_shape(*t, {cols}, path);
  if (t->dtype != io::DType::I32) fail(path, ": tensor ", name, " must be I32");
  std::vector<int32_t> perm(cols);
  std::memcpy(perm.data(), t->data, t->nbytes);
  std::vector<uint8_t> seen(cols, 0);
  for (int64_t j = 0; j < cols; ++j) {
    const int32_t c = perm[j];
    if (c < 0 || c >= cols || seen[c]) fail(path, ": tensor ", name, " is not a permutation of 0..", cols - 1,
                                            " (entry ", j, " = ", c, ")");
    seen[c] = 1;
  }
  return perm;
}

}  // namespace

std::map<std::string, std::string> load_quantized(model::Weights& w, const std::string& path) {
  io::SafetensorsFile f(path);
  auto get = [&](const char* key) { return f.required_metadata(key, "an ikv quantized model"); };
  if (get("ikv_quant_format") != "1") fail(path, ": unsupported quantized format ", get("ikv_quant_format"));
  if (get("source_fingerprint") != w.fingerprint)
    fail(path, ": quantized from another model (", get("source_fingerprint").substr(0, 12), "…), not ", w.source);
  int bits = 0;
  int64_t group = 0;
  try {
    bits = std::stoi(get("bits"));
    group = std::stoll(get("group"));
  } catch (const std::exception&) {
    fail(path, ": bad bits/group metadata");
  }
  const bool sym = get("sym") == "1";
  if (auto it = f.metadata().find("rotation"); it != f.metadata().end()) {
    if (it->second != "quarot") fail(path, ": unknown rotation '", it->second, "'");
    uint64_t seed = 0;
    try {
      seed = std::stoull(get("rotation_seed"));
    } catch (const std::exception&) {
      fail(path, ": bad rotation_seed metadata");
    }
    // The same rotation of the FP model the packed linears were made from; the linears themselves
    // are replaced below, so only the ends, norms and biases are rotated (nothing expanded).
    rotate_ends(w, seed);
    for (int64_t l = 0; l < w.config.n_layers; ++l) rotate_layer(w, l, /*weights=*/false);
  }
  for (auto& nl : model::named_linears(w)) {
    kernels::Linear& l = *nl.linear;
    kernels::QuantSpec spec{bits, static_cast<int>(group), sym};
    kernels::validate_spec(spec, l.in, nl.name);
    const int64_t resolved = group == -1 ? l.in : group;
    auto P = std::make_shared<kernels::PackedMatrix>();
    P->rows = l.out;
    P->cols = l.in;
    P->bits = bits;
    P->group = resolved;
    P->sym = sym;
    const kernels::CodeLayout lay = kernels::code_layout(bits, l.in);
    const io::TensorView& codes = f.get(nl.name + ".codes");
    io::expect_shape(codes, {l.out, lay.row_words * 16}, path);
    if (codes.dtype != io::DType::U32) fail(path, ": tensor ", codes.name, " must be U32");
    P->codes.resize(l.out * lay.row_words);
    std::memcpy(P->codes.data(), codes.data, codes.nbytes);
    const io::TensorView& scales = f.get(nl.name + ".scales");
    io::expect_shape(scales, {l.out, l.in / resolved}, path);
    if (scales.dtype != io::DType::F16) fail(path, ": tensor ", scales.name, " must be F16");
    P->scales.resize(scales.numel());
    std::memcpy(P->scales.data(), scales.data, scales.nbytes);
    for (int64_t g = 0; g < static_cast<int64_t>(P->scales.size()); ++g) {
      const float s = kernels::scale_value(*P, g / P->groups_per_row(), g % P->groups_per_row());
      if (!(std::isfinite(s) && s > 0)) fail(path, ": tensor ", scales.name, " holds an invalid scale ", s);
    }
    if (!sym) {
      const int64_t groups = l.out * (l.in / resolved);
      const int64_t bytes = bits <= 4 ? (groups + 1) / 2 : groups;
      const io::TensorView& zeros = f.get(nl.name + ".zeros");
      io::expect_shape(zeros, {bytes}, path);
      if (zeros.dtype != io::DType::U8) fail(path, ": tensor ", zeros.name, " must be U8");
      P->zeros.assign(zeros.data, zeros.data + zeros.nbytes);
    }
    kernels::set_packed(l, std::move(P), load_perm(f, nl.name + ".perm", l.in, path));
  }
  for (size_t l = 0; l < w.layers.size(); ++l)
    for (auto [name, norm] : {std::pair{"input_layernorm", &w.layers[l].attn_norm},
                              std::pair{"post_attention_layernorm", &w.layers[l].ffn_norm}}) {
      const io::TensorView* t = f.find("model.layers." + std::to_string(l) + "." + name + ".weight");
      if (!t) continue;  // only AWQ stores its norms
      io::expect_shape(*t, {w.config.dim}, path);
      std::vector<float> v = io::to_f32(*t, path);
      for (float x : v)
        if (!std::isfinite(x)) fail(path, ": tensor ", t->name, " holds a non-finite value");
      *norm = std::move(v);
    }
  if (auto it = f.metadata().find("act_bits"); it != f.metadata().end()) {
    int act_bits = 16;
    float act_clip = 1;
    try {
      act_bits = std::stoi(it->second);
      act_clip = std::stof(get("act_clip"));
    } catch (const std::exception&) {
      fail(path, ": bad act_bits/act_clip metadata");
    }
    set_activation_quant(w, act_bits, act_clip);
  }
  return f.metadata();
}

}  // namespace ikv::quant
