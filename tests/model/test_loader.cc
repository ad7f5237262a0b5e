// Loading real checkpoints (HF folder, sharded HF folder, llama2.c .bin) and rejecting broken ones.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/error.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "model/llama2c.h"
#include "model/tokenizer.h"
#include "model/weights.h"
#include "test_util.h"

using namespace ikv;
namespace fs = std::filesystem;

namespace {

// A writable copy of stories260K's folder to break in various ways (in /tmp, not the repo).
fs::path scratch_copy(const std::string& name) {
  fs::path dst = fs::temp_directory_path() / ("ikv-test-model-" + name);
  fs::remove_all(dst);
  fs::create_directories(dst);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.model"})
    fs::copy_file(test::model_dir("stories260K") + "/" + f, dst / f);
  fs::permissions(dst / "model.safetensors", fs::perms::owner_write, fs::perm_options::add);
  fs::permissions(dst / "config.json", fs::perms::owner_write, fs::perm_options::add);
  return dst;
}

std::string load_error(const fs::path& p) {
  try {
    model::load_model(p.string());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("testbed-26M loads from its sharded fp16 folder") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("testbed-26M"));
  CHECK(w.config.n_layers == 6);
  CHECK(w.config.n_kv_heads == 4);
  CHECK(w.config.head_dim == 64);
  CHECK_FALSE(w.config.tied_embeddings);
  CHECK(kernels::linear_dense_weight(w.lm_head).size() == 8192u * 512u);
  // fp16 as stored, read in place from the mapped shards.
  for (const kernels::Linear* l : {&w.lm_head, &w.layers[0].q, &w.layers[5].down}) {
    const auto* h = std::get_if<kernels::DenseHalf>(&l->weight);
    REQUIRE(h);
    CHECK(h->w.type == kernels::Half::kF16);
    CHECK(h->compute == kernels::Activations::kFp32);
  }
  CHECK(w.embed.is_half());
  CHECK(w.layers[5].down.in == 1408);
  CHECK(w.fingerprint.size() == 64);
}

TEST_CASE("stories260K: llama2.c .bin and HF folder hold the same weights after the q/k permutation") {
  if (test::data_root().empty()) return;
  model::Weights hf = model::load_model(test::model_dir("stories260K"));
  model::Weights bin = model::load_model(test::model_dir("stories260K") + "/original/stories260K.bin");
  CHECK(bin.config.tied_embeddings);
  CHECK(hf.embed.to_f32() == bin.embed.to_f32());
  for (size_t l = 0; l < hf.layers.size(); ++l) {
    CHECK(kernels::linear_dense_weight(hf.layers[l].q) == kernels::linear_dense_weight(bin.layers[l].q));
    CHECK(kernels::linear_dense_weight(hf.layers[l].k) == kernels::linear_dense_weight(bin.layers[l].k));
    CHECK(kernels::linear_dense_weight(hf.layers[l].down) == kernels::linear_dense_weight(bin.layers[l].down));
  }
  CHECK(kernels::linear_dense_weight(hf.lm_head) == kernels::linear_dense_weight(bin.lm_head));
  const auto tokenizer = model::open_tokenizer(test::model_dir("stories260K"));
  const model::Tokenizer& tok = *tokenizer;
  // The example from models/MANIFEST.md.
  CHECK(tok.encode("Once upon a time, there was a little girl named Lily.") ==
        std::vector<int32_t>{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426});
}

TEST_CASE("broken HF folders: shape mismatch, missing tensor, bad config, bad index") {
  if (test::data_root().empty()) return;
  {
    fs::path d = scratch_copy("shape");
    auto cfg = nlohmann::json::parse(io::read_text_file((d / "config.json").string()));
    cfg["intermediate_size"] = 176;
    io::write_file_atomic((d / "config.json").string(), cfg.dump());
    const std::string e = load_error(d);
    CHECK(e.find("model.safetensors: tensor model.layers.0.mlp.gate_proj.weight has shape [172, 64], config expects "
                 "[176, 64]") != std::string::npos);
  }
  {
    fs::path d = scratch_copy("missing");
    io::SafetensorsFile f((d / "model.safetensors").string());
    std::vector<io::TensorToWrite> keep;
    for (const auto& t : f.tensors())
      if (t.name != "model.norm.weight") keep.push_back({t.name, t.dtype, t.shape, t.data, t.nbytes});
    io::write_safetensors((d / "smaller.safetensors").string(), keep, {});
    fs::rename(d / "smaller.safetensors", d / "model.safetensors");
    CHECK(load_error(d).find("missing tensor model.norm.weight") != std::string::npos);
  }
  {
    fs::path d = scratch_copy("config");
    io::write_file_atomic((d / "config.json").string(), "{\"hidden_size\": 64,");
    CHECK(load_error(d).find("config.json: bad JSON") != std::string::npos);
  }
  {
    fs::path d = scratch_copy("index");
    io::write_file_atomic((d / "model.safetensors.index.json").string(),
                          R"({"weight_map":{"model.embed_tokens.weight":"model-00001-of-00002.safetensors"}})");
    CHECK(load_error(d).find("model-00001-of-00002.safetensors: cannot open") != std::string::npos);
    io::write_file_atomic((d / "model.safetensors.index.json").string(),
                          R"({"weight_map":{"model.embed_tokens.weight":"../../etc/passwd"}})");
    CHECK(load_error(d).find("must be a plain file name") != std::string::npos);
  }
  {
    fs::path d = scratch_copy("truncated");
    std::string bytes = io::read_text_file((d / "model.safetensors").string());
    io::write_file_atomic((d / "model.safetensors").string(), bytes.substr(0, bytes.size() / 2));
    CHECK(load_error(d).find("leave the data buffer") != std::string::npos);
  }
}

TEST_CASE("llama2.c reader: truncation, trailing bytes, absurd headers") {
  if (test::data_root().empty()) return;
  io::MappedFile f(test::model_dir("stories260K") + "/original/stories260K.bin");
  std::string bytes(reinterpret_cast<const char*>(f.data()), f.size());
  auto err = [](const std::string& b) {
    try {
      model::parse_llama2c(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "m.bin");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(err(bytes).empty());
  CHECK(err(bytes.substr(0, 10)).find("m.bin: truncated") != std::string::npos);
  CHECK(err(bytes.substr(0, bytes.size() - 4)).find("truncated llama2.c checkpoint") != std::string::npos);
  CHECK(err(bytes + std::string(8, '\0')).find("trailing floats") != std::string::npos);
  std::string bad = bytes;
  int32_t huge = 1 << 30;
  std::memcpy(bad.data(), &huge, 4);  // dim
  CHECK(err(bad).find("out of range") != std::string::npos);
  int32_t heads = 7;
  bad = bytes;
  std::memcpy(bad.data() + 12, &heads, 4);
  CHECK_FALSE(err(bad).empty());
}

TEST_CASE("permute_interleaved_to_half moves evens first then odds within each head") {
  std::vector<float> w = {0, 1, 2, 3, 10, 11, 12, 13};  // 2 heads of head_dim 4, in = 1
  CHECK(model::permute_interleaved_to_half(w, 2, 4, 1) == std::vector<float>{0, 2, 1, 3, 10, 12, 11, 13});
}
