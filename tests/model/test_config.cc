#include "io/error.h"
#include "model/config.h"
#include "test_util.h"

using namespace ikv;

namespace {
const char* kBase = R"({"model_type":"llama","hidden_size":512,"intermediate_size":1408,"num_hidden_layers":6,
  "num_attention_heads":8,"num_key_value_heads":4,"vocab_size":8192,"max_position_embeddings":1024,
  "rms_norm_eps":1e-5,"hidden_act":"silu","tie_word_embeddings":false %s})";

model::Config parse(const std::string& extra) {
  char buf[1024];
  std::snprintf(buf, sizeof buf, kBase, extra.c_str());
  return model::parse_hf_config(buf, "config.json");
}
}  // namespace

TEST_CASE("config.json: rope_theta at top level or in rope_parameters, head_dim, GQA") {
  CHECK(parse("").rope_theta == 10000.f);
  CHECK(parse(R"(,"rope_theta":500000.0)").rope_theta == 500000.f);
  CHECK(parse(R"(,"rope_parameters":{"rope_theta":1000000.0,"rope_type":"default"})").rope_theta == 1000000.f);
  model::Config c = parse(R"(,"head_dim":64)");
  CHECK(c.head_dim == 64);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.kv_dim() == 256);
  CHECK(parse("").head_dim == 64);  // hidden_size / heads when absent
  CHECK_FALSE(parse("").tied_embeddings);
}

TEST_CASE("config.json errors name the file and the key") {
  CHECK_THROWS_WITH_AS(model::parse_hf_config("{", "m/config.json"), doctest::Contains("m/config.json: bad JSON"), Error);
  CHECK_THROWS_WITH_AS(model::parse_hf_config(R"({"hidden_size":8})", "c.json"),
                       doctest::Contains("c.json: missing key intermediate_size"), Error);
  CHECK_THROWS_WITH_AS(parse(R"(,"num_key_value_heads":3)"), doctest::Contains("not a multiple of num_key_value_heads"),
                       Error);
  CHECK_THROWS_WITH_AS(parse(R"(,"head_dim":"x")"), doctest::Contains("head_dim must be an integer"), Error);
  CHECK_THROWS_WITH_AS(parse(R"(,"rope_scaling":{"type":"linear","factor":2.0})"),
                       doctest::Contains("config.json: rope_scaling type 'linear' is not supported"), Error);
  CHECK_THROWS_WITH_AS(parse(R"(,"rope_parameters":{"rope_type":"yarn","factor":4.0})"),
                       doctest::Contains("rope_parameters type 'yarn' is not supported"), Error);
  CHECK_THROWS_WITH_AS(parse(R"(,"model_type":"gemma2")"), doctest::Contains("model_type 'gemma2' is not supported"),
                       Error);
  CHECK_THROWS_WITH_AS(parse(R"(,"final_logit_softcapping":30.0)"),
                       doctest::Contains("final_logit_softcapping (soft-capping) is not supported"), Error);
  CHECK_THROWS_WITH_AS(parse(R"(,"model_type":"qwen2","use_sliding_window":true)"),
                       doctest::Contains("use_sliding_window true"), Error);
  CHECK_THROWS_WITH_AS(parse(R"(,"rope_scaling":{"rope_type":"llama3","factor":8.0})"),
                       doctest::Contains("rope_scaling.low_freq_factor must be a number"), Error);
}

TEST_CASE("config.json of the later families, in the transformers 4.x and 5.x spellings") {
  // LLaMA-3.1: 4.x rope_scaling + top-level rope_theta; 5.x everything in rope_parameters.
  const char* v4 = R"(,"rope_theta":500000.0,"rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
    "original_max_position_embeddings":8192,"rope_type":"llama3"},"attention_bias":false,"mlp_bias":false)";
  const char* v5 = R"(,"rope_parameters":{"rope_theta":500000.0,"factor":8.0,"low_freq_factor":1.0,
    "high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"})";
  for (const char* extra : {v4, v5}) {
    const model::Config c = parse(extra);
    CHECK(c.rope_theta == 500000.f);
    CHECK(c.rope_scaling.factor == 8.f);
    CHECK(c.rope_scaling.high_freq_factor == 4.f);
    CHECK(c.rope_scaling.original_max_pos == 8192);
    CHECK_FALSE(c.qkv_bias);
    CHECK(c.has_bos());
  }
  CHECK(parse(R"(,"attention_bias":true)").o_bias);
  CHECK(parse(R"(,"mlp_bias":true)").mlp_bias);
  // Mistral v0.1's sliding window; later versions write null.
  CHECK(parse(R"(,"model_type":"mistral","sliding_window":4096)").sliding_window == 4096);
  CHECK(parse(R"(,"model_type":"mistral","sliding_window":null)").sliding_window == 0);
  // Qwen2: q/k/v biases without a key, no BOS; its sliding_window is inert without use_sliding_window.
  const model::Config q2 = parse(R"(,"model_type":"qwen2","sliding_window":4096,"use_sliding_window":false)");
  CHECK(q2.qkv_bias);
  CHECK_FALSE(q2.o_bias);
  CHECK(q2.sliding_window == 0);
  CHECK_FALSE(q2.has_bos());
  const model::Config q3 = parse(R"(,"model_type":"qwen3","head_dim":128,"attention_bias":false)");
  CHECK(q3.qk_norm);
  CHECK(q3.q_dim() == 1024);  // wider than hidden_size 512
  CHECK_FALSE(q3.qkv_bias);
}
