// Shared helpers for the doctest suites.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "io/data_root.h"
#include "model/weights.h"

namespace ikv::test {

// The data root, or "" (and a doctest MESSAGE) when the ikv-data bundle is absent, so data-driven
// tests skip instead of failing on a machine without it.
inline std::string data_root() {
  static const std::string root = io::find_data_root();
  if (root.empty()) MESSAGE("ikv-data not found (set IKV_DATA); skipping data-driven checks");
  return root;
}

inline std::string model_dir(const std::string& name) { return data_root() + "/models/" + name; }

// n normal floats (mean 0, standard deviation sd) from a fixed seed.
inline std::vector<float> gaussian(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// `samples` calibration sequences (quant::CalibrationTokens) of <bos> and `len` - 1 random token ids.
inline std::vector<std::vector<int32_t>> random_calibration(const model::Config& c, size_t samples, int len,
                                                            uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> calib(samples);
  for (auto& s : calib) {
    s.push_back(c.bos_id);
    for (int t = 1; t < len; ++t) s.push_back(static_cast<int32_t>(rng() % c.vocab));
  }
  return calib;
}

// A random LLaMA of shape c (dim, hidden, layers, heads, vocab, max_pos) with every layer type
// (RMSNorm, GQA attention with RoPE, SwiGLU): linears N(0, 1/in), norm weights 1 + N(0, norm_std²)
// (the final norm's with final_norm_std), embedding and untied head random.
inline model::Weights tiny_random_model(uint32_t seed, const model::Config& shape, float norm_std,
                                        float final_norm_std) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> N(0.f, 1.f);
  model::Weights w;
  w.config = shape;
  const model::Config& c = w.config;
  auto fill = [&](int64_t n, float s, float mean = 0) {
    std::vector<float> v(n);
    for (auto& x : v) x = mean + s * N(rng);
    return v;
  };
  auto lin = [&](int64_t out, int64_t in) {
    return kernels::make_dense(fill(out * in, 1.0f / std::sqrt(float(in))), out, in);
  };
  w.embed = model::Embedding(fill(c.vocab * c.dim, 1.0f), c.vocab, c.dim);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    model::LayerWeights L;
    L.attn_norm = fill(c.dim, norm_std, 1.0f), L.ffn_norm = fill(c.dim, norm_std, 1.0f);
    L.q = lin(c.q_dim(), c.dim), L.k = lin(c.kv_dim(), c.dim), L.v = lin(c.kv_dim(), c.dim), L.o = lin(c.dim, c.q_dim());
    L.gate = lin(c.hidden, c.dim), L.up = lin(c.hidden, c.dim), L.down = lin(c.dim, c.hidden);
    // The later families' features, drawn only when the config has them (the LLaMA-2 draws stay).
    for (kernels::Linear* b : {&L.q, &L.k, &L.v})
      if (c.qkv_bias) b->bias = fill(b->out, 0.5f);
    if (c.o_bias) L.o.bias = fill(c.dim, 0.5f);
    for (kernels::Linear* b : {&L.gate, &L.up, &L.down})
      if (c.mlp_bias) b->bias = fill(b->out, 0.5f);
    if (c.qk_norm) L.q_norm = fill(c.head_dim, 0.3f, 1.0f), L.k_norm = fill(c.head_dim, 0.3f, 1.0f);
    w.layers.push_back(std::move(L));
  }
  w.final_norm = fill(c.dim, final_norm_std, 1.f);
  w.lm_head = lin(c.vocab, c.dim);
  w.fingerprint = "tiny-random";
  return w;
}

}  // namespace ikv::test
