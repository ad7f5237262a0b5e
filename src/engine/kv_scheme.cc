#include "engine/kv_scheme.h"

#include <algorithm>
#include <cmath>

#include "io/error.h"
#include "kernels/kv_quant.h"

namespace ikv::engine {

std::vector<uint8_t> massive_tokens(const float* x, int64_t n, int64_t dim, double ratio) {
  std::vector<uint8_t> massive(std::max<int64_t>(n, 0), 0);
  if (n < 2) return massive;
  std::vector<float> peak(n);
  for (int64_t t = 0; t < n; ++t) {
    float m = 0;
    for (int64_t i = 0; i < dim; ++i) m = std::max(m, std::abs(x[t * dim + i]));
    peak[t] = m;
  }
  std::vector<float> sorted = peak;
  std::nth_element(sorted.begin(), sorted.begin() + n / 2, sorted.end());
  const double median = std::max(sorted[n / 2], 1e-6f);  // as intactkv::inspect_pivots
  for (int64_t t = 0; t < n; ++t) massive[t] = peak[t] / median >= ratio;
  return massive;
}

namespace {

struct LayerView {
  KVCache& cache;
  int64_t layer, kv_dim, hd;
  KVCache::RawKV& raw;

  void restore_values(int64_t from, int64_t to) {
    for (int64_t p = from; p < to; ++p)
      for (int64_t h = 0; h < cache.n_kv_heads; ++h) std::copy_n(&raw.v[p * kv_dim + h * hd], hd, cache.v_at(layer, h, p));
  }
  void quantize_values(int64_t from, int64_t to) {
    for (int64_t p = from; p < to; ++p)
      for (int64_t h = 0; h < cache.n_kv_heads; ++h) {
        float* v = cache.v_at(layer, h, p);
        std::copy_n(&raw.v[p * kv_dim + h * hd], hd, v);
        kernels::fake_quantize_kv(v, hd, cache.kv_bits);
      }
  }
  // Keys of positions [from, to) from pre-RoPE values `pre` [to − from, kv_dim] into the cache.
  void write_keys(int64_t from, int64_t to, std::vector<float> pre,
                  const std::function<void(float*, int64_t)>& to_cache_form) {
    for (int64_t p = from; p < to; ++p) {
      float* key = &pre[(p - from) * kv_dim];
      to_cache_form(key, p);
      for (int64_t h = 0; h < cache.n_kv_heads; ++h) std::copy_n(key + h * hd, hd, cache.k_at(layer, h, p));
    }
  }
  void restore_keys(int64_t from, int64_t to, const std::function<void(float*, int64_t)>& to_cache_form) {
    if (to <= from) return;
    write_keys(from, to, std::vector<float>(&raw.k[from * kv_dim], &raw.k[to * kv_dim]), to_cache_form);
  }
  // Each channel of each group of `group` tokens in [from, to) quantized over the group's tokens.
  void quantize_keys(int64_t from, int64_t to, int64_t group, const std::function<void(float*, int64_t)>& to_cache_form) {
    for (int64_t b0 = from; b0 < to; b0 += group) {
      std::vector<float> pre(&raw.k[b0 * kv_dim], &raw.k[(b0 + group) * kv_dim]), channel(group);
      for (int64_t c = 0; c < kv_dim; ++c) {
        for (int64_t i = 0; i < group; ++i) channel[i] = pre[i * kv_dim + c];
        kernels::fake_quantize_kv(channel.data(), group, cache.kv_bits);
        for (int64_t i = 0; i < group; ++i) pre[i * kv_dim + c] = channel[i];
      }
      write_keys(b0, b0 + group, std::move(pre), to_cache_form);
    }
  }
};

}  // namespace

void kivi_update(KVCache& cache, int64_t layer, const KvScheme& scheme, int64_t p0, int64_t n, const float* k_raw,
                 const float* v_raw, const std::function<void(float* key, int64_t pos)>& to_cache_form) {
  if (scheme.residual < 0 || scheme.key_group < 1)
    fail("KIVI KV quantization: residual ", scheme.residual, " and key group ", scheme.key_group, " must be ≥ 0 and ≥ 1");
  const int64_t kv_dim = cache.n_kv_heads * cache.head_dim;
  if (cache.raw.size() != static_cast<size_t>(cache.n_layers)) cache.raw.assign(cache.n_layers, {});
  KVCache::RawKV& raw = cache.raw[layer];
  if (raw.k.empty()) raw.k.assign(cache.capacity * kv_dim, 0.0f), raw.v.assign(cache.capacity * kv_dim, 0.0f);
  std::copy_n(k_raw, n * kv_dim, &raw.k[p0 * kv_dim]);
  std::copy_n(v_raw, n * kv_dim, &raw.v[p0 * kv_dim]);
  LayerView view{cache, layer, kv_dim, cache.head_dim, raw};
  const int64_t start = cache.prefix_len, len = p0 + n, recent = std::max(start, len - scheme.residual);

  // Positions ≥ p0 were just written in full precision; a rewind may have left quantized ones
  // below the recent tokens' start, which are restored from the FP copies.
  int64_t done = std::clamp(raw.values_done, start, std::max(start, p0));
  if (recent > done) view.quantize_values(done, recent);
  if (recent < done) view.restore_values(recent, done);
  raw.values_done = recent;

  const int64_t G = scheme.key_group;
  done = std::clamp(raw.keys_done, start, std::max(start, p0));
  const int64_t aligned = start + (done - start) / G * G;  // a group cut by the new tokens is undone
  view.restore_keys(aligned, done, to_cache_form);
  const int64_t target = start + (recent - start) / G * G;  // complete groups before the recent tokens
  if (target > aligned) view.quantize_keys(aligned, target, G, to_cache_form);
  if (target < aligned) view.restore_keys(target, aligned, to_cache_form);
  raw.keys_done = target;
}

}  // namespace ikv::engine
