#include "model/weights.h"

#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <memory>

#include "io/error.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "io/sha256.h"
#include "model/llama2c.h"
#include "model/shard_index.h"

namespace fs = std::filesystem;

namespace ikv::model {
namespace {

// A 2-D weight as stored: a 16-bit tensor as a view of its mapped file, any other float dtype
// converted to fp32.
struct StoredMatrix {
  kernels::HalfMatrix half;  // set for BF16/F16
  std::vector<float> f32;
};

// Where each tensor lives: one file, or the shards named by model.safetensors.index.json.
struct TensorSource {
  std::vector<std::unique_ptr<io::SafetensorsFile>> files;
  std::map<std::string, const io::SafetensorsFile*> by_name;
  bool check_only = false;  // probe_model: names, shapes and dtypes checked, nothing converted
  mutable std::set<std::string> used;

  std::vector<float> read(const std::string& name, const std::vector<int64_t>& shape) const {
    used.insert(name);
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      const std::string where = files.size() == 1 ? files[0]->path() : "model.safetensors.index.json";
      fail(where, ": missing tensor ", name);
    }
    const io::TensorView& t = it->second->get(name);
    io::expect_shape(t, shape, it->second->path());
    if (check_only) {
      io::check_float_dtype(t, it->second->path());
      return {};
    }
    return io::to_f32(t, it->second->path());
  }

  StoredMatrix read_matrix(const std::string& name, const std::vector<int64_t>& shape) const {
    auto it = by_name.find(name);
    const io::TensorView* t = it == by_name.end() ? nullptr : it->second->find(name);
    if (check_only || !t || (t->dtype != io::DType::BF16 && t->dtype != io::DType::F16))
      return {{}, read(name, shape)};
    used.insert(name);
    io::expect_shape(*t, shape, it->second->path());
    const kernels::Half type = t->dtype == io::DType::BF16 ? kernels::Half::kBf16 : kernels::Half::kF16;
    if (reinterpret_cast<uintptr_t>(t->data) % alignof(uint16_t) != 0) {  // legal, if odd: copied
      std::vector<uint16_t> copy(t->nbytes / 2);
      std::memcpy(copy.data(), t->data, t->nbytes);
      return {kernels::owned_half(type, std::move(copy)), {}};
    }
    return {{type, reinterpret_cast<const uint16_t*>(t->data), io::hold_range(it->second->mapping(), t->data, t->nbytes)},
            {}};
  }

  kernels::Linear read_linear(const std::string& name, int64_t out, int64_t in) const {
    StoredMatrix m = read_matrix(name, {out, in});
    if (m.half.data) return kernels::make_dense_half(std::move(m.half), out, in);
    return kernels::make_dense(std::move(m.f32), out, in);
  }
};

TensorSource open_tensors(const fs::path& dir) {
  TensorSource src;
  fs::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
  std::error_code ec;
  if (fs::exists(index, ec)) {
    const ShardIndex shard_index = parse_shard_index(io::read_text_file(index.string()), index.string());
    std::map<std::string, const io::SafetensorsFile*> shard_by_file;
    for (const auto& [tensor, file] : shard_index.shard_of) {  // shards open in first-use order
      const io::SafetensorsFile*& shard = shard_by_file[file];
      if (!shard) {
        src.files.push_back(std::make_unique<io::SafetensorsFile>((dir / file).string()));
        shard = src.files.back().get();
      }
      if (!shard->find(tensor)) fail(shard->path(), ": missing tensor ", tensor, " (listed in the index)");
      src.by_name[tensor] = shard;
    }
  } else if (fs::exists(single, ec)) {
    src.files.push_back(std::make_unique<io::SafetensorsFile>(single.string()));
    for (const auto& t : src.files[0]->tensors()) src.by_name[t.name] = src.files[0].get();
  } else {
    fail(dir.string(), ": no model.safetensors or model.safetensors.index.json");
  }
  return src;
}

std::string fingerprint_of(const Config& c, const std::vector<std::string>& files) {
  std::string s = "dim=" + std::to_string(c.dim) + ";hidden=" + std::to_string(c.hidden) +
                  ";layers=" + std::to_string(c.n_layers) + ";heads=" + std::to_string(c.n_heads) + "/" +
                  std::to_string(c.n_kv_heads) + ";head_dim=" + std::to_string(c.head_dim) +
                  ";vocab=" + std::to_string(c.vocab) + ";";
  for (const auto& f : files) s += io::file_sha256_cached(f) + ";";
  return io::sha256_hex(s);
}

Weights load_hf_folder(const fs::path& dir, bool check_only) {
  const std::string config_path = (dir / "config.json").string();
  Weights w;
  w.config = parse_hf_config(io::read_text_file(config_path), config_path);
  const Config& c = w.config;
  TensorSource src = open_tensors(dir);
  src.check_only = check_only;
  const int64_t D = c.dim, H = c.hidden, Q = c.q_dim(), KV = c.kv_dim();
  {
    StoredMatrix e = src.read_matrix("model.embed_tokens.weight", {c.vocab, D});
    w.embed = e.half.data ? Embedding(std::move(e.half), c.vocab, D) : Embedding(std::move(e.f32), c.vocab, D);
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights L;
    L.attn_norm = src.read(p + "input_layernorm.weight", {D});
    L.ffn_norm = src.read(p + "post_attention_layernorm.weight", {D});
    L.q = src.read_linear(p + "self_attn.q_proj.weight", Q, D);
    L.k = src.read_linear(p + "self_attn.k_proj.weight", KV, D);
    L.v = src.read_linear(p + "self_attn.v_proj.weight", KV, D);
    L.o = src.read_linear(p + "self_attn.o_proj.weight", D, Q);
    L.gate = src.read_linear(p + "mlp.gate_proj.weight", H, D);
    L.up = src.read_linear(p + "mlp.up_proj.weight", H, D);
    L.down = src.read_linear(p + "mlp.down_proj.weight", D, H);
    // Biases and q/k norms where the config says the architecture has them (a tensor the config
    // does not announce is refused below, not ignored).
    auto bias = [&](kernels::Linear& lin, const char* name, bool present) {
      if (present) lin.bias = src.read(p + name, {lin.out});
    };
    bias(L.q, "self_attn.q_proj.bias", c.qkv_bias);
    bias(L.k, "self_attn.k_proj.bias", c.qkv_bias);
    bias(L.v, "self_attn.v_proj.bias", c.qkv_bias);
    bias(L.o, "self_attn.o_proj.bias", c.o_bias);
    bias(L.gate, "mlp.gate_proj.bias", c.mlp_bias);
    bias(L.up, "mlp.up_proj.bias", c.mlp_bias);
    bias(L.down, "mlp.down_proj.bias", c.mlp_bias);
    if (c.qk_norm) {
      L.q_norm = src.read(p + "self_attn.q_norm.weight", {c.head_dim});
      L.k_norm = src.read(p + "self_attn.k_norm.weight", {c.head_dim});
    }
    w.layers.push_back(std::move(L));
  }
  w.final_norm = src.read("model.norm.weight", {D});
  for (const auto& [name, file] : src.by_name)
    if (!src.used.count(name) && name != "lm_head.weight" && name.find("rotary_emb.inv_freq") == std::string::npos)
      fail(file->path(), ": tensor ", name, " has no place in the model config.json describes (an undeclared bias or norm?)");
  // Tied checkpoints have no lm_head.weight (HF convention); an untied one must have it.
  if (src.by_name.count("lm_head.weight") && !c.tied_embeddings)
    w.lm_head = src.read_linear("lm_head.weight", c.vocab, D);
  else if (c.tied_embeddings)  // the embedding's storage, shared (a copy only for an fp32 table)
    w.lm_head = w.embed.is_half() ? kernels::make_dense_half(w.embed.half, c.vocab, D)
                                  : kernels::make_dense(w.embed.f32, c.vocab, D);
  else
    src.read("lm_head.weight", {c.vocab, D});  // raises "missing tensor lm_head.weight"
  std::vector<std::string> files = {config_path};
  for (const auto& f : src.files) files.push_back(f->path());
  w.fingerprint = fingerprint_of(c, files);
  return w;
}

Weights load_llama2c(const std::string& path) {
  Llama2cCheckpoint ck = read_llama2c(path);
  Weights w;
  w.config = ck.config;
  const Config& c = w.config;
  const int64_t D = c.dim, H = c.hidden, Q = c.q_dim(), KV = c.kv_dim();
  w.embed = Embedding(std::move(ck.embed), c.vocab, D);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    auto& s = ck.layers[l];
    LayerWeights L;
    L.attn_norm = std::move(s.attn_norm);
    L.ffn_norm = std::move(s.ffn_norm);
    L.q = kernels::make_dense(std::move(s.wq), Q, D);
    L.k = kernels::make_dense(std::move(s.wk), KV, D);
    L.v = kernels::make_dense(std::move(s.wv), KV, D);
    L.o = kernels::make_dense(std::move(s.wo), D, Q);
    L.gate = kernels::make_dense(std::move(s.w1), H, D);
    L.up = kernels::make_dense(std::move(s.w3), H, D);
    L.down = kernels::make_dense(std::move(s.w2), D, H);
    w.layers.push_back(std::move(L));
  }
  w.final_norm = std::move(ck.final_norm);
  w.lm_head = kernels::make_dense(ck.wcls.empty() ? w.embed.f32 : std::move(ck.wcls), c.vocab, D);
  w.fingerprint = fingerprint_of(c, {path});
  return w;
}

}  // namespace

Embedding::Embedding(std::vector<float> table, int64_t vocab_, int64_t dim_)
    : vocab(vocab_), dim(dim_), f32(std::move(table)) {}

Embedding::Embedding(kernels::HalfMatrix table, int64_t vocab_, int64_t dim_)
    : vocab(vocab_), dim(dim_), half(std::move(table)) {}

void Embedding::row(int64_t token, float* out) const {
  if (half.data) kernels::half_to_f32(half.type, half.data + token * dim, dim, out);
  else std::memcpy(out, f32.data() + token * dim, static_cast<size_t>(dim) * sizeof(float));
  if (rotate) kernels::hadamard_rows(*rotate, out, 1);
}

std::vector<float> Embedding::to_f32() const {
  std::vector<float> t = half.data ? kernels::half_to_f32(half.type, half.data, vocab * dim) : f32;
  if (rotate) kernels::hadamard_rows(*rotate, t.data(), vocab);
  return t;
}

std::vector<float>& Embedding::expand_to_f32() {
  if (half.data || rotate) {
    f32 = to_f32();
    half = {};
    rotate.reset();
  }
  return f32;
}

Weights load_model(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path, ": model not found");
  Weights w = fs::is_directory(path, ec) ? load_hf_folder(path, false) : load_llama2c(path);
  w.source = path;
  return w;
}

ModelProbe probe_model(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path, ": model not found");
  // A llama2c .bin is small (a few MB): probing it is loading it.
  Weights w = fs::is_directory(path, ec) ? load_hf_folder(path, true) : load_llama2c(path);
  return {w.config, w.fingerprint};
}

namespace {

// Every linear the compute dtype applies to: the decoder's and the head.
std::vector<kernels::Linear*> linears_and_head(Weights& w) {
  std::vector<kernels::Linear*> all;
  for (auto& nl : named_linears(w)) all.push_back(nl.linear);
  all.push_back(&w.lm_head);
  return all;
}

}  // namespace

void convert_linears_to_bf16(Weights& w) {
  for (kernels::Linear* l : linears_and_head(w)) kernels::to_bf16(*l);
}

void use_q8_inputs(Weights& w) {
  for (kernels::Linear* l : linears_and_head(w)) kernels::use_q8_inputs(*l);
}

std::vector<NamedLinear> layer_linears(Weights& w, size_t layer) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  LayerWeights& L = w.layers.at(layer);
  return {{p + "self_attn.q_proj.weight", &L.q}, {p + "self_attn.k_proj.weight", &L.k},
          {p + "self_attn.v_proj.weight", &L.v}, {p + "self_attn.o_proj.weight", &L.o},
          {p + "mlp.gate_proj.weight", &L.gate}, {p + "mlp.up_proj.weight", &L.up},
          {p + "mlp.down_proj.weight", &L.down}};
}

std::vector<NamedLinear> named_linears(Weights& w) {
  std::vector<NamedLinear> out;
  for (size_t l = 0; l < w.layers.size(); ++l)
    for (NamedLinear& nl : layer_linears(w, l)) out.push_back(std::move(nl));
  return out;
}

void release_layer_pages(const Weights& w, int64_t layer) {
  const LayerWeights& L = w.layers.at(static_cast<size_t>(layer));
  for (const kernels::Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
    if (const auto* h = std::get_if<kernels::DenseHalf>(&l->weight)) io::release_held(h->w.owner);
}

int64_t mapped_layer_bytes(const Weights& w) {
  int64_t bytes = 0;
  for (const LayerWeights& L : w.layers)
    for (const kernels::Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      if (const auto* h = std::get_if<kernels::DenseHalf>(&l->weight))
        bytes += static_cast<int64_t>(io::held_bytes(h->w.owner));
  return bytes;
}

}  // namespace ikv::model
