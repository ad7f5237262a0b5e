#include "intactkv/calibrate_checkpoint.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/error.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace ikv::intactkv {

void save_checkpoint(const std::string& path, const TrainState& st, const model::Config& c, const std::string& key) {
  std::vector<io::TensorToWrite> tensors;
  const std::vector<int64_t> shape{c.n_kv_heads, st.p.len, c.head_dim};
  using Named = std::pair<const char*, const PrefixKV<float>*>;
  for (auto [name, kv] : {Named{"prefix", &st.p}, Named{"adam_m", &st.m}, Named{"adam_v", &st.v}})
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string base = std::string(name) + "." + std::to_string(l);
      tensors.push_back({base + ".key", io::DType::F32, shape, kv->key[l].data(), kv->key[l].size() * 4});
      tensors.push_back({base + ".value", io::DType::F32, shape, kv->value[l].data(), kv->value[l].size() * 4});
    }
  nlohmann::json log = nlohmann::json::array();
  for (const StepLog& s : st.log) log.push_back({s.step, s.epoch, s.lr, s.loss, s.loss_last_layer, s.grad_norm});
  std::ostringstream rng;
  rng << st.rng;
  io::write_safetensors(path, tensors,
                        {{"ikv_checkpoint", "1"}, {"key", key}, {"step", std::to_string(st.step)},
                         {"epoch", std::to_string(st.epoch)}, {"rng", rng.str()}, {"log", log.dump()}});
}

bool load_checkpoint(const std::string& path, TrainState& st, const model::Config& c, const std::string& key) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return false;
  io::SafetensorsFile f(path);
  auto get = [&](const char* key) { return f.required_metadata(key, "an IntactKV calibration checkpoint"); };
  if (get("ikv_checkpoint") != "1") fail(path, ": unsupported checkpoint format");
  if (get("key") != key)
    fail(path, ": checkpoint of a calibration with other settings or another model; remove it or choose another "
               "output");
  const std::vector<int64_t> shape{c.n_kv_heads, st.p.len, c.head_dim};
  using Named = std::pair<const char*, PrefixKV<float>*>;
  using Part = std::pair<const char*, std::vector<float>*>;
  for (auto [name, kv] : {Named{"prefix", &st.p}, Named{"adam_m", &st.m}, Named{"adam_v", &st.v}})
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string base = std::string(name) + "." + std::to_string(l);
      for (auto [suffix, dst] : {Part{".key", &kv->key[l]}, Part{".value", &kv->value[l]}}) {
        const io::TensorView& t = f.get(base + suffix);
        io::expect_shape(t, shape, path);
        *dst = io::to_f32(t, path);
      }
    }
  try {
    st.step = std::stoll(get("step"));
    st.epoch = std::stoll(get("epoch"));
    std::istringstream(get("rng")) >> st.rng;
    st.log.clear();
    for (const auto& r : nlohmann::json::parse(get("log")))
      st.log.push_back({r[0].get<int64_t>(), r[1].get<int64_t>(), r[2].get<double>(), r[3].get<double>(),
                        r[4].get<double>(), r[5].get<double>()});
  } catch (const std::exception& e) {
    fail(path, ": bad checkpoint metadata (", e.what(), ")");
  }
  return true;
}

}  // namespace ikv::intactkv
