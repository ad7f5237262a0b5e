#include "intactkv/prefix.h"

#include <cstring>

#include "io/error.h"
#include "kernels/kv_quant.h"
#include "quant/quarot.h"

namespace ikv::intactkv {

Prefix build_prefix(const engine::Engine& fp_engine, const std::vector<int32_t>& tokens) {
  const model::Config& c = fp_engine.config();
  if (tokens.empty()) fail("IntactKV prefix: empty token list");
  if (c.has_bos() && tokens[0] != c.bos_id) fail("IntactKV prefix: must start with <bos> (id ", c.bos_id, ")");
  const int64_t P = static_cast<int64_t>(tokens.size());
  engine::KVCache cache = engine::make_kv_cache(c, P);
  fp_engine.forward(cache, tokens.data(), P, nullptr, P);
  Prefix p;
  p.tokens = tokens;
  p.model_fingerprint = fp_engine.weights().fingerprint;
  p.key.assign(c.n_layers, std::vector<float>(c.n_kv_heads * P * c.head_dim));
  p.value = p.key;
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (int64_t h = 0; h < c.n_kv_heads; ++h) {
      // The cache holds [heads, capacity = P, head_dim]: the same layout as the prefix.
      std::memcpy(&p.key[l][h * P * c.head_dim], cache.k_at(l, h, 0), P * c.head_dim * sizeof(float));
      std::memcpy(&p.value[l][h * P * c.head_dim], cache.v_at(l, h, 0), P * c.head_dim * sizeof(float));
    }
  return p;
}

void install_prefix(engine::KVCache& cache, const Prefix& prefix, const engine::Engine& eng, bool quantize_prefix) {
  const int64_t P = prefix.size(), Hd = cache.head_dim;
  if (static_cast<int64_t>(prefix.key.size()) != cache.n_layers)
    fail("IntactKV prefix has ", prefix.key.size(), " layers, the model ", cache.n_layers);
  if (P > cache.capacity) fail("IntactKV prefix of ", P, " tokens exceeds the cache capacity ", cache.capacity);
  for (int64_t l = 0; l < cache.n_layers; ++l) {
    if (static_cast<int64_t>(prefix.key[l].size()) != cache.n_kv_heads * P * Hd)
      fail("IntactKV prefix layer ", l, " has the wrong size for this model");
    for (int64_t h = 0; h < cache.n_kv_heads; ++h)
      for (int64_t t = 0; t < P; ++t) {
        float* kd = cache.k_at(l, h, t);
        float* vd = cache.v_at(l, h, t);
        std::memcpy(kd, &prefix.key[l][(h * P + t) * Hd], Hd * sizeof(float));
        std::memcpy(vd, &prefix.value[l][(h * P + t) * Hd], Hd * sizeof(float));
        quant::kv_to_model(eng.weights(), kd, 1);
        quant::kv_to_model(eng.weights(), vd, 1);
        if (quantize_prefix && cache.kv_bits < 16) {
          kernels::fake_quantize_kv(kd, Hd, cache.kv_bits);
          kernels::fake_quantize_kv(vd, Hd, cache.kv_bits);
        }
      }
  }
  cache.prefix_len = P;
  cache.len = P;
}

int64_t matched_prefix_length(const Prefix& prefix, const std::vector<int32_t>& input) {
  int64_t m = 0;
  while (m < prefix.size() && m < static_cast<int64_t>(input.size()) && prefix.tokens[m] == input[m]) ++m;
  return m;
}

}  // namespace ikv::intactkv
