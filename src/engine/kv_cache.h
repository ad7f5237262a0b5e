// The key/value cache of one sequence. Positions [0, prefix_len) may hold a read-only prefix (an
// IntactKV prefix computed by the full-precision model); reset() rewinds to just after it.
// Keys are stored after RoPE, both as [n_kv_heads, capacity, head_dim] per layer.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace ikv::engine {

struct KVCache {
  int64_t n_layers = 0, n_kv_heads = 0, head_dim = 0, capacity = 0;
  std::vector<std::vector<float>> k, v;  // per layer
  int64_t len = 0;          // positions filled
  int64_t prefix_len = 0;   // read-only prefix positions
  int kv_bits = 16;         // 16 = no KV quantization; else each new token's K/V is fake-quantized
  // KIVI (engine/kv_scheme.h): per layer, keys before RoPE and values in full precision [capacity,
  // kv_dim], and how far the cache is quantized; allocated by the first forward that needs them.
  struct RawKV {
    std::vector<float> k, v;
    int64_t keys_done = 0, values_done = 0;  // positions [prefix_len, done) hold quantized K / V
  };
  std::vector<RawKV> raw;

  float* k_at(int64_t layer, int64_t head, int64_t pos) { return &k[layer][(head * capacity + pos) * head_dim]; }
  float* v_at(int64_t layer, int64_t head, int64_t pos) { return &v[layer][(head * capacity + pos) * head_dim]; }
  const float* k_at(int64_t layer, int64_t head, int64_t pos) const {
    return &k[layer][(head * capacity + pos) * head_dim];
  }
  const float* v_at(int64_t layer, int64_t head, int64_t pos) const {
    return &v[layer][(head * capacity + pos) * head_dim];
  }
  void reset() { len = prefix_len; }
  // The key and value at slot `from` copied to slot `to`, in every layer and head.
  void copy_slot(int64_t from, int64_t to) {
    for (int64_t l = 0; l < n_layers; ++l)
      for (int64_t h = 0; h < n_kv_heads; ++h) {
        std::copy_n(k_at(l, h, from), head_dim, k_at(l, h, to));
        std::copy_n(v_at(l, h, from), head_dim, v_at(l, h, to));
      }
  }
};

KVCache make_kv_cache(const model::Config& c, int64_t capacity, int kv_bits = 16);

}  // namespace ikv::engine
