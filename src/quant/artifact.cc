#include "quant/artifact.h"

#include <cmath>
#include <cstring>

#include "io/error.h"
#include "io/safetensors.h"
#include "quant/packed_matrix.h"

namespace ikv::quant {

void save_quantized(model::Weights& w, const std::string& path, const std::map<std::string, std::string>& settings) {
  std::vector<io::TensorToWrite> tensors;
  std::string bits, sym;
  int64_t group = -1;  // per-channel (every matrix one group per row) unless some matrix has narrower groups
  for (auto& nl : model::named_linears(w)) {
    if (!nl.linear->packed) fail(path, ": ", nl.name, " is not quantized; nothing to save");
    const PackedMatrix& p = *nl.linear->packed;
    const int64_t lanes = static_cast<int64_t>(p.codes.size()) * 16;
    tensors.push_back({nl.name + ".codes", io::DType::U32, {p.rows, lanes / p.rows}, p.codes.data(), p.codes.size() * 64});
    tensors.push_back({nl.name + ".scales", io::DType::F16, {p.rows, p.groups_per_row()}, p.scales.data(), p.scales.size() * 2});
    if (!p.sym) tensors.push_back({nl.name + ".zeros", io::DType::U8, {static_cast<int64_t>(p.zeros.size())}, p.zeros.data(), p.zeros.size()});
    if (p.group != p.cols) group = p.group;
    bits = std::to_string(p.bits);
    sym = p.sym ? "1" : "0";
  }
  std::map<std::string, std::string> meta = settings;
  meta["ikv_quant_format"] = "1";
  meta["bits"] = bits;
  meta["group"] = std::to_string(group);
  meta["sym"] = sym;
  meta["source_fingerprint"] = w.fingerprint;
  io::write_safetensors(path, tensors, meta);
}

std::map<std::string, std::string> load_quantized(model::Weights& w, const std::string& path) {
  io::SafetensorsFile f(path);
  const auto& meta = f.metadata();
  auto get = [&](const char* key) {
    auto it = meta.find(key);
    if (it == meta.end()) fail(path, ": not an ikv quantized model (metadata ", key, " missing)");
    return it->second;
  };
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
  for (auto& nl : model::named_linears(w)) {
    kernels::Linear& l = *nl.linear;
    QuantSpec spec{bits, static_cast<int>(group), sym};
    validate_spec(spec, l.in, nl.name);
    const int64_t resolved = group == -1 ? l.in : group;
    auto P = std::make_shared<PackedMatrix>();
    P->rows = l.out;
    P->cols = l.in;
    P->bits = bits;
    P->group = resolved;
    P->sym = sym;
    const CodeLayout lay = code_layout(bits, l.in);
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
      const float s = scale_value(*P, g / P->groups_per_row(), g % P->groups_per_row());
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
    l.packed = std::move(P);
    l.w.clear();
    l.w.shrink_to_fit();
    l.w_bf16.clear();
  }
  return std::map<std::string, std::string>(meta.begin(), meta.end());
}

}  // namespace ikv::quant
