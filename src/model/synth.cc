#include "model/synth.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/dtype.h"
#include "io/error.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace ikv::model {
namespace {

constexpr double kInitStd = 0.02;  // HF initializer_range, written into config.json too

struct Family {
  const char* shape;
  const char* model_type;
  const char* architecture;
  int64_t dim, hidden, layers, heads, kv_heads, head_dim, vocab, max_pos;
  double norm_eps, rope_theta;
  int32_t bos, eos;
  bool llama3_rope = false, qk_norm = false;
  int64_t sliding_window = 0;
  std::vector<const char*> tokenizer;  // relative to the data root
};

const std::vector<Family>& families() {
  static const std::vector<Family> f = {
      {"llama2-7b", "llama", "LlamaForCausalLM", 4096, 11008, 32, 32, 32, 128, 32000, 4096, 1e-5, 10000.0, 1, 2,
       false, false, 0, {"models/llama2-tokenizer/tokenizer.model"}},
      {"llama2-13b", "llama", "LlamaForCausalLM", 5120, 13824, 40, 40, 40, 128, 32000, 4096, 1e-5, 10000.0, 1, 2,
       false, false, 0, {"models/llama2-tokenizer/tokenizer.model"}},
      {"llama3-8b", "llama", "LlamaForCausalLM", 4096, 14336, 32, 32, 8, 128, 128256, 131072, 1e-5, 500000.0,
       128000, 128001, true, false, 0, {"tokenizers/llama3/tokenizer.json", "tokenizers/llama3/tokenizer_config.json"}},
      {"qwen3-8b", "qwen3", "Qwen3ForCausalLM", 4096, 12288, 36, 32, 8, 128, 151936, 40960, 1e-6, 1000000.0, 151643,
       151645, false, true, 0, {"tokenizers/qwen3/tokenizer.json", "tokenizers/qwen3/tokenizer_config.json"}},
      {"mistral-7b", "mistral", "MistralForCausalLM", 4096, 14336, 32, 32, 8, 128, 32000, 32768, 1e-5, 10000.0, 1, 2,
       false, false, 4096, {"tokenizers/mistral-v0.1/tokenizer.model"}},
  };
  return f;
}

const Family& family_of(const std::string& shape) {
  for (const Family& f : families())
    if (shape == f.shape) return f;
  std::string known;
  for (const auto& s : synth_shapes()) known += (known.empty() ? "" : ", ") + s;
  fail("synth: shape '", shape, "' is not known (", known, ")");
}

// The family at the options' size.
Family sized(const SynthOptions& opt) {
  Family f = family_of(opt.shape);
  if (opt.dtype != "bf16" && opt.dtype != "fp16") fail("synth: --dtype '", opt.dtype, "' is not supported (bf16, fp16)");
  if (opt.layers < 0 || opt.layers > 1024) fail("synth: --layers ", opt.layers, " must be 1..1024 (0 = the shape's)");
  if (opt.max_shard_bytes <= 0) fail("synth: the shard size must be positive");
  if (opt.tiny) {
    const int64_t group = f.heads / f.kv_heads;
    f.dim = 128, f.hidden = 256, f.heads = 4, f.kv_heads = std::max<int64_t>(1, 4 / group), f.head_dim = 32;
    f.layers = 2;
    if (f.sliding_window) f.sliding_window = 64;
  }
  if (opt.layers) f.layers = opt.layers;
  return f;
}

// splitmix64: a full-period 64-bit mix, so hash(key + i) is a fine counter-based generator.
inline uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t tensor_key(uint64_t seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the name
  for (unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ull;
  return mix(h ^ mix(seed + 0x9e3779b97f4a7c15ull));
}

struct SynthTensor {
  std::string name;
  std::vector<int64_t> shape;
  float amplitude = 0;  // uniform in [-a, a); 0 = all ones (norm weights)
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

std::vector<SynthTensor> tensor_list(const Family& f) {
  const float a = static_cast<float>(kInitStd * std::sqrt(3.0));  // uniform with standard deviation kInitStd
  const int64_t D = f.dim, Q = f.heads * f.head_dim, KV = f.kv_heads * f.head_dim, H = f.hidden;
  std::vector<SynthTensor> t;
  t.push_back({"model.embed_tokens.weight", {f.vocab, D}, a});
  for (int64_t l = 0; l < f.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back({p + "input_layernorm.weight", {D}, 0});
    t.push_back({p + "self_attn.q_proj.weight", {Q, D}, a});
    t.push_back({p + "self_attn.k_proj.weight", {KV, D}, a});
    t.push_back({p + "self_attn.v_proj.weight", {KV, D}, a});
    t.push_back({p + "self_attn.o_proj.weight", {D, Q}, a});
    if (f.qk_norm) {
      t.push_back({p + "self_attn.q_norm.weight", {f.head_dim}, 0});
      t.push_back({p + "self_attn.k_norm.weight", {f.head_dim}, 0});
    }
    t.push_back({p + "mlp.gate_proj.weight", {H, D}, a});
    t.push_back({p + "mlp.up_proj.weight", {H, D}, a});
    t.push_back({p + "mlp.down_proj.weight", {D, H}, a});
    t.push_back({p + "post_attention_layernorm.weight", {D}, 0});
  }
  t.push_back({"model.norm.weight", {D}, 0});
  t.push_back({"lm_head.weight", {f.vocab, D}, a});
  return t;
}

// Values [i0, i0 + n) of a tensor in the file's dtype.
void generate(const SynthTensor& t, uint64_t key, bool bf16, int64_t i0, int64_t n, uint16_t* out) {
  const uint16_t one = bf16 ? io::fp32_to_bf16(1.0f) : io::fp32_to_fp16(1.0f);
  if (t.amplitude == 0) return std::fill(out, out + n, one);
  const float scale = t.amplitude / 8388608.0f;  // 24 random bits to [-a, a)
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = static_cast<int64_t>(mix(key + static_cast<uint64_t>(i0 + i) * 0x9e3779b97f4a7c15ull) >> 40);
    const float v = static_cast<float>(r - 8388608) * scale;
    out[i] = bf16 ? io::fp32_to_bf16(v) : io::fp32_to_fp16(v);
  }
}

nlohmann::ordered_json config_of(const Family& f, const SynthOptions& opt) {
  nlohmann::ordered_json j;
  j["architectures"] = {f.architecture};
  j["model_type"] = f.model_type;
  j["hidden_size"] = f.dim;
  j["intermediate_size"] = f.hidden;
  j["num_hidden_layers"] = f.layers;
  j["num_attention_heads"] = f.heads;
  j["num_key_value_heads"] = f.kv_heads;
  j["head_dim"] = f.head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = f.max_pos;
  j["rms_norm_eps"] = f.norm_eps;
  j["rope_theta"] = f.rope_theta;
  if (f.llama3_rope)
    j["rope_scaling"] = {{"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192}, {"rope_type", "llama3"}};
  else
    j["rope_scaling"] = nullptr;
  if (std::string(f.model_type) != "mistral") j["attention_bias"] = false;
  if (std::string(f.model_type) == "llama") j["mlp_bias"] = false;
  if (std::string(f.model_type) == "qwen3") {
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = f.layers;
  }
  if (f.sliding_window) j["sliding_window"] = f.sliding_window;
  j["vocab_size"] = f.vocab;
  j["bos_token_id"] = f.bos;
  j["eos_token_id"] = f.eos;
  j["tie_word_embeddings"] = false;
  j["initializer_range"] = kInitStd;
  j["torch_dtype"] = opt.dtype == "bf16" ? "bfloat16" : "float16";
  j["use_cache"] = true;
  j["ikv_synthetic"] = {{"shape", opt.shape}, {"seed", opt.seed}, {"tiny", opt.tiny},
                        {"weights", "uniform, std 0.02; norms 1 (random, not a trained model)"}};
  return j;
}

std::string shard_name(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

}  // namespace

const std::vector<std::string>& synth_shapes() {
  static const std::vector<std::string> s = [] {
    std::vector<std::string> out;
    for (const Family& f : families()) out.push_back(f.shape);
    return out;
  }();
  return s;
}

std::string synth_config_json(const SynthOptions& opt) { return config_of(sized(opt), opt).dump(2) + "\n"; }

SynthResult write_synth_checkpoint(const std::string& dir, const SynthOptions& opt) {
  const Family f = sized(opt);
  SynthResult r;
  r.config_json = config_of(f, opt).dump(2) + "\n";
  r.config = parse_hf_config(r.config_json, dir + "/config.json");  // the shapes come from what loads
  std::vector<std::string> tokenizer_files;
  for (const char* rel : f.tokenizer) {
    if (opt.data_root.empty()) break;
    const fs::path src = fs::absolute(fs::path(opt.data_root) / rel);
    std::error_code ec;
    if (!fs::is_regular_file(src, ec)) fail(src.string(), ": tokenizer file of ", opt.shape, " not found in the data root");
    tokenizer_files.push_back(src.string());
  }
  std::error_code ec;
  if (fs::exists(dir, ec) && !(fs::is_directory(dir, ec) && fs::is_empty(dir, ec)))
    fail(dir, ": exists and is not an empty folder (synth writes a new one)");
  fs::create_directories(dir, ec);
  if (ec) fail(dir, ": cannot create (", ec.message(), ")");

  const bool bf16 = opt.dtype == "bf16";
  const std::vector<SynthTensor> tensors = tensor_list(f);
  // Shards in model order, each up to max_shard_bytes (a larger tensor gets one of its own).
  std::vector<std::vector<size_t>> shards(1);
  int64_t in_shard = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int64_t bytes = tensors[i].numel() * 2;
    if (!shards.back().empty() && in_shard + bytes > opt.max_shard_bytes) shards.emplace_back(), in_shard = 0;
    shards.back().push_back(i);
    in_shard += bytes;
    r.params += tensors[i].numel();
    r.bytes += bytes;
  }
  nlohmann::ordered_json weight_map;
  constexpr int64_t kChunk = int64_t{1} << 23;  // values generated at a time (16 MB)
  std::vector<uint16_t> buf;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string name = shards.size() == 1 ? "model.safetensors" : shard_name(s, shards.size());
    std::vector<io::TensorToWrite> specs;
    for (size_t i : shards[s]) {
      const SynthTensor& t = tensors[i];
      specs.push_back({t.name, bf16 ? io::DType::BF16 : io::DType::F16, t.shape, nullptr,
                       static_cast<size_t>(t.numel()) * 2});
      weight_map[t.name] = name;
    }
    io::SafetensorsWriter out((fs::path(dir) / name).string(), specs, {{"format", "pt"}});
    for (size_t i : shards[s]) {
      const SynthTensor& t = tensors[i];
      const uint64_t key = tensor_key(opt.seed, t.name);
      for (int64_t i0 = 0; i0 < t.numel(); i0 += kChunk) {
        const int64_t n = std::min(kChunk, t.numel() - i0);
        buf.resize(static_cast<size_t>(n));
        generate(t, key, bf16, i0, n, buf.data());
        out.append(buf.data(), static_cast<size_t>(n) * 2);
      }
    }
    out.finish();
    r.shards.push_back(name);
  }
  if (shards.size() > 1) {
    const nlohmann::ordered_json index = {{"metadata", {{"total_size", r.bytes}}}, {"weight_map", weight_map}};
    io::write_file_atomic((fs::path(dir) / "model.safetensors.index.json").string(), index.dump(2) + "\n");
  }
  for (const std::string& src : tokenizer_files) {
    const fs::path link = fs::path(dir) / fs::path(src).filename();
    fs::create_symlink(src, link, ec);
    if (ec) fail(link.string(), ": cannot link the tokenizer (", ec.message(), ")");
    r.tokenizer_files.push_back(src);
  }
  io::write_file_atomic((fs::path(dir) / "config.json").string(), r.config_json);
  return r;
}

}  // namespace ikv::model
