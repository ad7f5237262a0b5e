// The shape of a LLaMA-family model: plain data, validated once where it is read, then trusted.
#pragma once
#include <cstdint>
#include <string>

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
  bool tied_embeddings = false;
  int32_t bos_id = 1;
  int32_t eos_id = 2;

  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
};

// Parses an HF config.json (LLaMA family). Reads rope_theta at top level or inside
// rope_parameters, head_dim when present. Errors name the file and the key.
Config parse_hf_config(const std::string& json_text, const std::string& path);
// Checks the derived invariants (positive sizes, heads divisible, head_dim even).
void validate_config(const Config& c, const std::string& path);

}  // namespace ikv::model
