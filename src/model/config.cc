#include "model/config.h"

#include <nlohmann/json.hpp>

#include "io/error.h"
#include "io/json.h"

namespace ikv::model {
namespace {

int64_t get_int(const nlohmann::json& j, const char* key, const std::string& path) {
  if (!j.contains(key)) fail(path, ": missing key ", key);
  const auto& v = j[key];
  if (!v.is_number_integer()) fail(path, ": key ", key, " must be an integer, got ", v.dump());
  return v.get<int64_t>();
}

}  // namespace

Config parse_hf_config(const std::string& json_text, const std::string& path) {
  const nlohmann::json j = io::parse_json(json_text, path);
  if (!j.is_object()) fail(path, ": not a JSON object");
  const std::string model_type = j.contains("model_type") && j["model_type"].is_string() ? j["model_type"] : "llama";
  if (model_type != "llama" && model_type != "mistral" && model_type != "qwen2" && model_type != "qwen3")
    fail(path, ": model_type '", model_type, "' is not supported (llama, mistral, qwen2, qwen3)");
  // Features of other families that would silently change the forward pass.
  for (const char* k : {"attn_logit_softcapping", "final_logit_softcapping", "logit_softcapping"})
    if (j.contains(k) && !j[k].is_null()) fail(path, ": ", k, " (soft-capping) is not supported");
  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    fail(path, ": hidden_act ", j["hidden_act"].dump(), " is not supported (silu)");
  Config c;
  c.dim = get_int(j, "hidden_size", path);
  c.hidden = get_int(j, "intermediate_size", path);
  c.n_layers = get_int(j, "num_hidden_layers", path);
  c.n_heads = get_int(j, "num_attention_heads", path);
  c.n_kv_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                     ? get_int(j, "num_key_value_heads", path)
                     : c.n_heads;
  c.vocab = get_int(j, "vocab_size", path);
  c.max_pos = j.contains("max_position_embeddings") ? get_int(j, "max_position_embeddings", path) : 2048;
  c.head_dim = j.contains("head_dim") && !j["head_dim"].is_null() ? get_int(j, "head_dim", path)
                                                                    : (c.n_heads ? c.dim / c.n_heads : 0);
  if (j.contains("rms_norm_eps")) {
    if (!j["rms_norm_eps"].is_number()) fail(path, ": key rms_norm_eps must be a number");
    c.norm_eps = j["rms_norm_eps"].get<float>();
  }
  // transformers >= 5 writes rope_parameters.rope_theta; older checkpoints a top-level rope_theta.
  const nlohmann::json* theta = nullptr;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object() &&
      j["rope_parameters"].contains("rope_theta"))
    theta = &j["rope_parameters"]["rope_theta"];
  else if (j.contains("rope_theta"))
    theta = &j["rope_theta"];
  if (theta) {
    if (!theta->is_number()) fail(path, ": rope_theta must be a number");
    c.rope_theta = theta->get<float>();
  }
  // RoPE scaling: transformers 4.x writes rope_scaling, 5.x folds it into rope_parameters.
  const char* key = j.contains("rope_scaling") && !j["rope_scaling"].is_null() ? "rope_scaling"
                    : j.contains("rope_parameters")                             ? "rope_parameters"
                                                                                : nullptr;
  if (key) {
    const nlohmann::json* rope = &j[key];
    if (!rope->is_object()) fail(path, ": ", key, " must be an object");
    const std::string type = rope->value("rope_type", rope->value("type", std::string("default")));
    if (type == "llama3") {
      auto number = [&](const char* k) {
        if (!rope->contains(k) || !(*rope)[k].is_number()) fail(path, ": ", key, ".", k, " must be a number");
        return (*rope)[k].get<double>();
      };
      c.rope_scaling.factor = static_cast<float>(number("factor"));
      c.rope_scaling.low_freq_factor = static_cast<float>(number("low_freq_factor"));
      c.rope_scaling.high_freq_factor = static_cast<float>(number("high_freq_factor"));
      c.rope_scaling.original_max_pos = static_cast<int64_t>(number("original_max_position_embeddings"));
      if (!(c.rope_scaling.factor > 0) || !(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor) ||
          !(c.rope_scaling.low_freq_factor > 0) || c.rope_scaling.original_max_pos <= 0)
        fail(path, ": ", key, " llama3 scaling needs factor > 0, high_freq_factor > low_freq_factor > 0");
    } else if (type != "default") {
      fail(path, ": ", key, " type '", type, "' is not supported (default, llama3)");
    }
  }
  auto flag = [&](const char* k) {
    if (!j.contains(k) || j[k].is_null()) return false;
    if (!j[k].is_boolean()) fail(path, ": key ", k, " must be true or false");
    return j[k].get<bool>();
  };
  c.qkv_bias = c.o_bias = flag("attention_bias");
  c.mlp_bias = flag("mlp_bias");
  if (model_type == "qwen2") c.qkv_bias = true, c.o_bias = false;  // Qwen2 has q/k/v biases and no key for them
  c.qk_norm = model_type == "qwen3";
  // Mistral: sliding_window (null on later versions). Qwen2/3 carry it too, used only with
  // use_sliding_window, on the layers from max_window_layers: not computed here.
  if (model_type == "mistral" && j.contains("sliding_window") && !j["sliding_window"].is_null())
    c.sliding_window = get_int(j, "sliding_window", path);
  if (flag("use_sliding_window")) fail(path, ": use_sliding_window true (per-layer sliding windows) is not supported");
  if (j.contains("layer_types") && j["layer_types"].is_array())
    for (const auto& t : j["layer_types"])
      if (t != "full_attention") fail(path, ": layer_types ", t.dump(), " is not supported (full_attention)");
  c.tied_embeddings = j.value("tie_word_embeddings", false);
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer()) c.bos_id = j["bos_token_id"];
  // Qwen's config names a bos_token_id that its tokenizer never adds (add_bos_token false) and
  // transformers' goldens do not use: the model has no BOS.
  if (model_type == "qwen2" || model_type == "qwen3") c.bos_id = -1;
  if (j.contains("eos_token_id") && j["eos_token_id"].is_number_integer()) c.eos_id = j["eos_token_id"];
  validate_config(c, path);
  return c;
}

void validate_config(const Config& c, const std::string& path) {
  auto positive = [&](int64_t v, const char* what) {
    if (v <= 0 || v > (int64_t{1} << 24)) fail(path, ": ", what, " = ", v, " is out of range");
  };
  positive(c.dim, "hidden_size");
  positive(c.hidden, "intermediate_size");
  positive(c.n_layers, "num_hidden_layers");
  positive(c.n_heads, "num_attention_heads");
  positive(c.n_kv_heads, "num_key_value_heads");
  positive(c.head_dim, "head_dim");
  positive(c.vocab, "vocab_size");
  positive(c.max_pos, "max_position_embeddings");
  if (c.n_heads % c.n_kv_heads != 0)
    fail(path, ": num_attention_heads ", c.n_heads, " is not a multiple of num_key_value_heads ", c.n_kv_heads);
  if (c.head_dim % 2 != 0) fail(path, ": head_dim ", c.head_dim, " must be even for RoPE");
  if (!(c.norm_eps > 0)) fail(path, ": rms_norm_eps must be positive");
  if (!(c.rope_theta > 0)) fail(path, ": rope_theta must be positive");
  if (c.sliding_window < 0) fail(path, ": sliding_window ", c.sliding_window, " must be positive");
  if (c.bos_id < -1 || c.bos_id >= c.vocab) fail(path, ": bos_token_id ", c.bos_id, " is outside the vocabulary");
}

}  // namespace ikv::model
