// Labels of config entries and the data-dependent path check.
#include <charconv>
#include <filesystem>

#include "exp/config.h"
#include "io/error.h"
#include "io/sha256.h"

namespace ikv::exp {
namespace fs = std::filesystem;

bool QuantizerSpec::needs_calibration() const {
  return method == "gptq" || method == "awq" || (method == "quarot" && weight_quant == "gptq");
}

std::string QuantizerSpec::short_label() const {
  if (!label.empty()) return label;
  if (is_fp()) return "fp";
  // Appends, not `"a" + std::to_string(...)`: GCC 12 raises a false -Wrestrict on the latter.
  std::string s = method;
  s += "-w";
  s += std::to_string(wbits);
  if (method == "quarot" && abits < 16) s += 'a', s += std::to_string(abits);
  if (group > 0) s += 'g', s += std::to_string(group);
  if (sym) s += "-sym";
  if (method == "gptq" && act_order) s += "-ao";
  if (method == "quarot" && weight_quant == "gptq") s += "-gptq";
  if (head_bits < 16) s += "-head", s += std::to_string(head_bits);
  if (keep_super_weights) s += "-sw";
  if (static_scales()) s += "-static";
  return s;
}

QuantizerSpec QuantizerSpec::weights_only() const {
  QuantizerSpec q = *this;
  q.label.clear();
  q.scales = "dynamic";
  if (!q.needs_calibration()) q.samples = QuantizerSpec{}.samples, q.seq_len = QuantizerSpec{}.seq_len, q.data = QuantizerSpec{}.data;
  return q;
}

std::string quant_label(const QuantizerSpec& q, const KvQuantSpec& kv) {
  std::string s = q.short_label();
  if (const std::string k = kv.short_label(); !k.empty()) s += '-', s += k;
  return s;
}

std::string KvQuantSpec::short_label() const {
  std::string s;  // appends, as short_label above (GCC 12's false -Wrestrict)
  if (keys == "per_channel_prerope") s += "kivi", s += std::to_string(residual);
  if (protect == "sinks") {
    if (!s.empty()) s += '-';
    s += "sinks";
  }
  return s;
}

std::string IntactKVSpec::short_label() const {
  switch (kind) {
    case Kind::None: return "none";
    case Kind::Bos: return "bos";
    case Kind::Auto: return "auto";
    case Kind::Preset: return value;
    case Kind::Prompt: return "prompt-" + io::sha256_hex(value).substr(0, 8);
    case Kind::File: {
      std::string stem = fs::path(value).filename().string();
      const std::string ext = ".ikv.safetensors";
      if (stem.size() > ext.size() && stem.ends_with(ext)) stem.resize(stem.size() - ext.size());
      return "file-" + stem;
    }
    case Kind::Calibrated: return calibration.prefix + "+cal";
  }
  return "?";
}

std::string model_dir(const ModelSpec& model, const std::string& data_root) {
  if (fs::path(model.path).is_absolute() || data_root.empty()) return model.path;
  return (fs::path(data_root) / model.path).lexically_normal().string();
}

void check_paths_exist(const ExperimentConfig& config, const std::string& data_root) {
  for (const auto& m : config.models) {
    const std::string dir = model_dir(m, data_root);
    std::error_code ec;
    if (!fs::exists(dir, ec)) fail(m.where, ": model path does not exist: ", dir);
  }
}

}  // namespace ikv::exp
