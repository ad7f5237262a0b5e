// How an Engine quantizes beyond the reference's dynamic per-token quantizers (issue #23, the
// successors of IntactKV), set once per Engine (EngineOptions) and read by its backend:
//
//   StaticScales  PrefixQuant's static per-tensor scales: one activation range per linear input
//                 and one K and one V range per layer, calibrated beforehand with the prefix in
//                 the cache (intactkv/static_scales.h), in place of each token's own range.
//   sinks         KVSink-style protection: at each layer, the new tokens whose layer input has a
//                 massive activation (peak max|x| ≥ ratio × the median token's peak over the tokens
//                 of the forward call: the rule of `ikv-eval inspect`) keep their K/V unquantized.
//   KIVI          keys per channel before RoPE, quantized in groups of `key_group` consecutive
//                 tokens, values per token, the most recent `residual` tokens full precision. The
//                 cache keeps the pre-RoPE keys and FP values (KVCache::raw) and is rewritten after
//                 each forward call's tokens entered it (kivi_update); a quantized key is
//                 dequantized, then rotated. "Recent" is counted at the end of the call, so in a
//                 perplexity window (one call) the last `residual` tokens stay FP for every query,
//                 and earlier ones are quantized for every query, as the per-token KV quantizer
//                 quantizes each token for every query.
// The cache's kv_bits still decides whether the KV cache is quantized at all (16 = none). Static KV
// ranges apply to the per-token quantizer (with or without sinks); KIVI's KV quantization stays
// dynamic, and static activation scales apply with any KV scheme.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/kv_cache.h"

namespace ikv::engine {

// Calibrated ranges per layer (static per-tensor quantization). Activation entries are max |x|
// over the calibration tokens of each linear input (q/k/v share the attention input, gate/up the
// FFN input); the scale a linear uses is clip · max / (2^(abits−1) − 1), the formula of the
// dynamic quantizer with a fixed max. K and V ranges are min/max over every head and channel.
struct StaticScales {
  struct Layer {
    float attn_in = 0, o_in = 0, ffn_in = 0, down_in = 0;
    float k_lo = 0, k_hi = 0, v_lo = 0, v_hi = 0;
  };
  std::vector<Layer> layers;  // empty = dynamic scales
  bool empty() const { return layers.empty(); }
};

enum class KeyQuant { per_token, per_channel_prerope };

struct KvScheme {
  KeyQuant keys = KeyQuant::per_token;  // values are always per token
  int64_t residual = 0;                 // KIVI: the most recent tokens kept full precision
  int64_t key_group = 128;              // KIVI: consecutive tokens per key group
  bool protect_sinks = false;
  double sink_ratio = 5.0;  // inspect's default pivot threshold
  bool kivi() const { return keys == KeyQuant::per_channel_prerope; }
};

struct EngineOptions {
  KvScheme kv;
  StaticScales scales;
};

// The tokens of x [n, dim] whose peak max|x| is ≥ ratio × the median token's peak (the upper
// median, as inspect takes it): 1 = massive. All 0 when n < 2 (no median to stand out of).
std::vector<uint8_t> massive_tokens(const float* x, int64_t n, int64_t dim, double ratio);

// The KIVI cache update of one layer after positions p0..p0+n−1 entered it (their K after RoPE,
// V as computed, in cache layer `layer`): stores the new pre-RoPE keys k_raw [n, n_kv_heads·head_dim]
// and values v_raw (same shape), then quantizes (or restores to FP, after the cache was rewound)
// every position so that, of positions ≥ prefix_len, values older than the `residual` most recent
// are quantized per token and head, and keys per channel over complete groups of key_group tokens
// that lie wholly before the recent ones. to_cache_form(key, pos) turns one token's pre-RoPE key
// (all heads) into the form the cache holds (RoPE at pos, and the QuaRot head rotation).
void kivi_update(KVCache& cache, int64_t layer, const KvScheme& scheme, int64_t p0, int64_t n, const float* k_raw,
                 const float* v_raw, const std::function<void(float* key, int64_t pos)>& to_cache_form);

}  // namespace ikv::engine
