// The shape of a LLaMA-family model: plain data, validated once where it is read, then trusted.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/ops.h"

namespace ikv::model {

struct Config {
  int64_t dim = 0;          // hidden_size
  int64_t hidden = 0;       // intermediate_size (SwiGLU width)
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;   // GQA: query head h reads kv head h / (n_heads / n_kv_heads)
  int64_t head_dim = 0;
  int64_t vocab = 0;
  int64_t max_pos = 0;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.f;
  kernels::RopeScaling rope_scaling;  // LLaMA-3.x (rope_type llama3); factor 0 = none
  bool tied_embeddings = false;
  // Beyond LLaMA-2 (config.json keys in parse_hf_config):
  bool qkv_bias = false;        // q/k/v_proj biases (Qwen2: always; LLaMA/Qwen3: attention_bias)
  bool o_bias = false;          // o_proj bias (attention_bias)
  bool mlp_bias = false;        // gate/up/down biases (mlp_bias)
  bool qk_norm = false;         // Qwen3: RMSNorm over each head of q and k before RoPE
  int64_t sliding_window = 0;   // Mistral v0.1: a query sees the last N positions only; 0 = all
  int32_t bos_id = 1;          // -1: the model has no BOS (Qwen), streams and prompts start with text

  int32_t eos_id = 2;

  bool has_bos() const { return bos_id >= 0; }
  std::vector<int32_t> bos_tokens() const { return has_bos() ? std::vector<int32_t>{bos_id} : std::vector<int32_t>{}; }
  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
};

// Parses an HF config.json of model_type llama, mistral, qwen2 or qwen3, in the transformers 4.x
// and 5.x spellings (rope_theta at top level or in rope_parameters; rope_scaling or
// rope_parameters for llama3 scaling). A key asking for something the engine does not compute
// (another rope_type, soft-capping, per-layer sliding windows) is an Error naming the file and the key.
Config parse_hf_config(const std::string& json_text, const std::string& path);
// Checks the derived invariants (positive sizes, heads divisible, head_dim even).
void validate_config(const Config& c, const std::string& path);

}  // namespace ikv::model
