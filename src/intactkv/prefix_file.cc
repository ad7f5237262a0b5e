#include "intactkv/prefix_file.h"

#include <nlohmann/json.hpp>

#include "io/dtype.h"
#include "io/error.h"
#include "io/safetensors.h"

namespace ikv::intactkv {

void save_prefix(const Prefix& p, const model::Config& c, const std::string& path, bool fp16) {
  const int64_t P = p.size();
  std::vector<std::vector<uint16_t>> halves;  // keeps fp16 copies alive until written
  std::vector<io::TensorToWrite> tensors;
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (int kind = 0; kind < 2; ++kind) {
      const std::vector<float>& src = kind == 0 ? p.key[l] : p.value[l];
      const std::string name = "layers." + std::to_string(l) + (kind == 0 ? ".key" : ".value");
      std::vector<int64_t> shape{c.n_kv_heads, P, c.head_dim};
      if (fp16) {
        halves.emplace_back(src.size());
        for (size_t i = 0; i < src.size(); ++i) halves.back()[i] = io::fp32_to_fp16(src[i]);
        tensors.push_back({name, io::DType::F16, shape, halves.back().data(), src.size() * 2});
      } else {
        tensors.push_back({name, io::DType::F32, shape, src.data(), src.size() * 4});
      }
    }
  nlohmann::json settings(p.settings);
  std::map<std::string, std::string> meta = {{"ikv_format", "1"},
                                             {"model_fingerprint", p.model_fingerprint},
                                             {"prefix_tokens", nlohmann::json(p.tokens).dump()},
                                             {"origin", p.origin},
                                             {"settings", settings.dump()}};
  io::write_safetensors(path, tensors, meta);
}

Prefix load_prefix(const std::string& path, const model::Config& c, const std::string& model_fingerprint) {
  io::SafetensorsFile f(path);
  auto get = [&](const char* key) { return f.required_metadata(key, "an IntactKV file"); };
  if (get("ikv_format") != "1") fail(path, ": unsupported IntactKV format ", get("ikv_format"));
  Prefix p;
  p.model_fingerprint = get("model_fingerprint");
  if (p.model_fingerprint != model_fingerprint)
    fail(path, ": IntactKV was built for model ", p.model_fingerprint.substr(0, 12), "…, not this model (",
         model_fingerprint.substr(0, 12), "…)");
  p.origin = get("origin");
  try {
    p.tokens = nlohmann::json::parse(get("prefix_tokens")).get<std::vector<int32_t>>();
    p.settings = nlohmann::json::parse(get("settings")).get<std::map<std::string, std::string>>();
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": bad IntactKV metadata (", e.what(), ")");
  }
  const int64_t P = p.size();
  if (P == 0) fail(path, ": empty IntactKV prefix");
  for (int32_t t : p.tokens)
    if (t < 0 || t >= c.vocab) fail(path, ": prefix token id ", t, " is outside the model's vocabulary (0..", c.vocab - 1, ")");
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string base = "layers." + std::to_string(l);
    const io::TensorView& k = f.get(base + ".key");
    const io::TensorView& v = f.get(base + ".value");
    io::expect_shape(k, {c.n_kv_heads, P, c.head_dim}, path);
    io::expect_shape(v, {c.n_kv_heads, P, c.head_dim}, path);
    p.key.push_back(io::to_f32(k, path));
    p.value.push_back(io::to_f32(v, path));
  }
  if (f.find("layers." + std::to_string(c.n_layers) + ".key"))
    fail(path, ": IntactKV has more layers than the model's ", c.n_layers);
  return p;
}

}  // namespace ikv::intactkv
