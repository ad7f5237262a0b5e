#include "intactkv/static_scales.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "io/error.h"

namespace ikv::intactkv {
namespace {

float max_abs(const std::vector<float>& x) {
  float m = 0;
  for (float v : x) m = std::max(m, std::abs(v));
  return m;
}

}  // namespace

engine::StaticScales calibrate_static_scales(const engine::Engine& eng, const Prefix* prefix,
                                             const std::vector<std::vector<int32_t>>& sequences) {
  const model::Config& c = eng.config();
  const engine::Engine dynamic(eng.weights());  // the dynamic scales the static ones replace
  engine::StaticScales out;
  out.layers.assign(c.n_layers, {});
  constexpr float inf = std::numeric_limits<float>::infinity();
  for (auto& L : out.layers) L.k_lo = L.v_lo = inf, L.k_hi = L.v_hi = -inf;
  int64_t tokens = 0;
  for (const auto& seq : sequences) {
    const int64_t P = prefix ? prefix->size() : 0;
    const int64_t m = prefix ? matched_prefix_length(*prefix, seq) : 0;
    const int64_t n = static_cast<int64_t>(seq.size()) - m;
    if (n <= 0) continue;
    engine::KVCache cache = engine::make_kv_cache(c, P + n);
    if (prefix) install_prefix(cache, *prefix, dynamic);
    std::vector<engine::LinearInputs> inputs;
    engine::ForwardTaps taps;
    taps.linear_inputs = &inputs;
    dynamic.forward(cache, seq.data() + m, n, nullptr, n, taps);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      engine::StaticScales::Layer& L = out.layers[l];
      L.attn_in = std::max(L.attn_in, max_abs(inputs[l].attn_in));
      L.o_in = std::max(L.o_in, max_abs(inputs[l].o_in));
      L.ffn_in = std::max(L.ffn_in, max_abs(inputs[l].ffn_in));
      L.down_in = std::max(L.down_in, max_abs(inputs[l].down_in));
      for (int64_t h = 0; h < c.n_kv_heads; ++h)
        for (int64_t p = P; p < P + n; ++p)
          for (int64_t i = 0; i < c.head_dim; ++i) {
            const float k = cache.k_at(l, h, p)[i], v = cache.v_at(l, h, p)[i];
            L.k_lo = std::min(L.k_lo, k), L.k_hi = std::max(L.k_hi, k);
            L.v_lo = std::min(L.v_lo, v), L.v_hi = std::max(L.v_hi, v);
          }
    }
    tokens += n;
  }
  if (tokens == 0) fail("static scales: no calibration tokens after the prefix");
  return out;
}

}  // namespace ikv::intactkv
