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
                       doctest::Contains("rope_scaling is not supported"), Error);
}
