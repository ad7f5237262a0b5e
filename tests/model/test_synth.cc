// Synthetic checkpoints (model/synth.h): every shape's config is the real family's (parameter
// counts of the published models), the folder loads and runs, and the bytes follow the seed only.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "io/error.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "model/synth.h"
#include "model/weights.h"
#include "test_util.h"

using namespace ikv;
namespace fs = std::filesystem;

namespace {

int64_t params_of(const model::Config& c) {
  const int64_t layer = 2 * c.dim * c.q_dim() + 2 * c.dim * c.kv_dim() + 3 * c.dim * c.hidden + 2 * c.dim +
                        (c.qk_norm ? 2 * c.head_dim : 0);
  return 2 * c.vocab * c.dim + c.n_layers * layer + c.dim;
}

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("ikv-test-synth-" + name);
  fs::remove_all(d);
  return d;
}

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace

TEST_CASE("synth configs are the real families' (published parameter counts)") {
  struct Want {
    const char* shape;
    int64_t params;
  };
  // LLaMA-2-7B/13B, Llama-3(.1)-8B, Qwen3-8B and Mistral-7B-v0.1 as their model cards count them.
  for (const Want& w : {Want{"llama2-7b", 6738415616}, Want{"llama2-13b", 13015864320},
                        Want{"llama3-8b", 8030261248}, Want{"qwen3-8b", 8190735360},
                        Want{"mistral-7b", 7241732096}}) {
    CAPTURE(w.shape);
    model::SynthOptions opt;
    opt.shape = w.shape;
    const model::Config c = model::parse_hf_config(model::synth_config_json(opt), "config.json");
    CHECK(params_of(c) == w.params);
  }
  model::SynthOptions opt;
  opt.shape = "llama3-8b";
  model::Config c = model::parse_hf_config(model::synth_config_json(opt), "config.json");
  CHECK(c.rope_scaling.factor == 8.0f);
  CHECK(c.rope_scaling.original_max_pos == 8192);
  CHECK(c.n_kv_heads == 8);
  CHECK(c.bos_id == 128000);
  opt.shape = "qwen3-8b";
  c = model::parse_hf_config(model::synth_config_json(opt), "config.json");
  CHECK(c.qk_norm);
  CHECK_FALSE(c.has_bos());
  CHECK(c.head_dim == 128);
  CHECK(c.n_layers == 36);
  CHECK(c.vocab == 151936);
  opt.shape = "mistral-7b";
  c = model::parse_hf_config(model::synth_config_json(opt), "config.json");
  CHECK(c.sliding_window == 4096);
  opt.layers = 3;
  opt.tiny = true;
  c = model::parse_hf_config(model::synth_config_json(opt), "config.json");
  CHECK(c.n_layers == 3);
  CHECK(c.dim == 128);
  CHECK(c.n_kv_heads == 1);  // Mistral's 4 query heads per KV head, kept
  CHECK(c.sliding_window == 64);
  CHECK(c.vocab == 32000);
}

TEST_CASE("a tiny synthetic checkpoint: shards, index, loads, and depends on the seed only") {
  model::SynthOptions opt;
  opt.shape = "qwen3-8b";
  opt.tiny = true;
  opt.seed = 7;
  opt.max_shard_bytes = 20'000'000;  // the two 39 MB embeddings each get a shard of their own
  const fs::path a = fresh_dir("a"), b = fresh_dir("b"), c = fresh_dir("c");
  const model::SynthResult r = model::write_synth_checkpoint(a.string(), opt);
  CHECK(r.shards.size() == 3);
  CHECK(r.params == params_of(r.config));
  CHECK(r.tokenizer_files.empty());  // no data root given
  CHECK(fs::exists(a / "model.safetensors.index.json"));
  for (const auto& e : fs::directory_iterator(a)) CHECK(e.path().extension() != ".tmp");

  model::Weights w = model::load_model(a.string());
  CHECK(w.config.qk_norm);
  CHECK(w.layers.size() == 2);
  CHECK(w.layers[1].q_norm.size() == 32);
  CHECK(w.layers[0].attn_norm == std::vector<float>(128, 1.0f));
  // Uniform with standard deviation 0.02.
  const io::SafetensorsFile shard((a / r.shards[1]).string());
  const std::vector<float> q = io::to_f32(shard.get("model.layers.0.self_attn.q_proj.weight"), shard.path());
  double sum2 = 0, mx = 0;
  for (float v : q) sum2 += double(v) * v, mx = std::max<double>(mx, std::fabs(v));
  CHECK(std::sqrt(sum2 / q.size()) == doctest::Approx(0.02).epsilon(0.02));
  CHECK(mx <= 0.02 * std::sqrt(3.0) + 1e-4);


  // The same seed gives the same bytes whatever the sharding; another seed other bytes.
  opt.max_shard_bytes = 5'000'000'000;
  const model::SynthResult one = model::write_synth_checkpoint(b.string(), opt);
  REQUIRE(one.shards == std::vector<std::string>{"model.safetensors"});
  const io::SafetensorsFile single((b / "model.safetensors").string());
  CHECK(io::to_f32(single.get("model.layers.0.self_attn.q_proj.weight"), single.path()) == q);
  opt.seed = 8;
  model::write_synth_checkpoint(c.string(), opt);
  const io::SafetensorsFile other((c / "model.safetensors").string());
  CHECK(io::to_f32(other.get("model.layers.0.self_attn.q_proj.weight"), other.path()) != q);
  opt.seed = 7;
  fs::remove_all(c);
  model::write_synth_checkpoint(c.string(), opt);
  CHECK(file_bytes(c / "model.safetensors") == file_bytes(b / "model.safetensors"));

  // A folder that is not empty is refused, and nothing is written into it.
  CHECK_THROWS_WITH_AS(model::write_synth_checkpoint(a.string(), opt), doctest::Contains("is not an empty folder"),
                       Error);
  opt.shape = "llama9-1t";
  CHECK_THROWS_WITH_AS(model::write_synth_checkpoint(fresh_dir("d").string(), opt),
                       doctest::Contains("shape 'llama9-1t' is not known (llama2-7b, llama2-13b"), Error);
  opt.shape = "llama2-7b";
  opt.dtype = "fp32";
  CHECK_THROWS_WITH_AS(model::write_synth_checkpoint(fresh_dir("d").string(), opt),
                       doctest::Contains("--dtype 'fp32' is not supported (bf16, fp16)"), Error);
  CHECK_FALSE(fs::exists(fresh_dir("d")));
  for (const fs::path& d : {a, b, c}) fs::remove_all(d);
}

TEST_CASE("a tiny synthetic checkpoint links its family's tokenizer from the data root") {
  if (test::data_root().empty()) return;
  model::SynthOptions opt;
  opt.shape = "llama3-8b";
  opt.tiny = true;
  opt.dtype = "fp16";
  opt.data_root = test::data_root();
  const fs::path d = fresh_dir("tok");
  const model::SynthResult r = model::write_synth_checkpoint(d.string(), opt);
  REQUIRE(r.tokenizer_files.size() == 2);
  CHECK(fs::is_symlink(d / "tokenizer.json"));
  CHECK(fs::read_symlink(d / "tokenizer.json") == fs::path(test::data_root()) / "tokenizers/llama3/tokenizer.json");
  const io::SafetensorsFile f((d / "model.safetensors").string());
  CHECK(f.get("lm_head.weight").dtype == io::DType::F16);
  fs::remove_all(d);
}
