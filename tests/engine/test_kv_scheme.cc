// The engine's KV schemes (engine/kv_scheme.h) against plain references: KIVI's cache (keys per
// channel before RoPE over token groups, values per token, the recent tokens in full precision)
// after any sequence of forward calls, rewinds included; the same on testbed-26M's first layer
// from the keys the engine computed; and KVSink-style protection: testbed-26M's <bos> is found
// and its K/V stay exactly as computed.
#include <algorithm>
#include <cmath>
#include <functional>

#include "engine/forward.h"
#include "engine/kv_scheme.h"
#include "io/mapped_file.h"
#include "kernels/linear.h"
#include "model/tokenizer.h"
#include "test_util.h"

using namespace ikv;

namespace {

// The KV quantizer's formula written out (DESIGN.md "KV-cache quantization"), over x.
void quantize_plain(std::vector<float>& x, int bits) {
  float lo = x[0], hi = x[0];
  for (float v : x) lo = std::min(lo, v), hi = std::max(hi, v);
  const float qmax = float((1 << bits) - 1);
  const float scale = std::clamp((hi - lo) / qmax, 1e-5f, 1e4f);
  const float zero = std::nearbyint(std::clamp(-lo / scale, -1e4f, 1e4f));
  for (float& v : x) v = (std::clamp(std::nearbyint(v / scale) + zero, 0.0f, qmax) - zero) * scale;
}

// KIVI's cache of positions [0, len) from the full-precision pre-RoPE keys and values
// [len, kv_dim], one position at a time: the reference of kivi_update.
struct KiviReference {
  int64_t heads, hd, prefix, residual, group;
  int bits;
  std::function<void(float*, int64_t)> form;

  void cache(const std::vector<float>& k, const std::vector<float>& v, int64_t len, std::vector<float>& kc,
             std::vector<float>& vc) const {
    const int64_t D = heads * hd, recent = std::max(prefix, len - residual);
    kc.assign(k.begin(), k.begin() + len * D);
    vc.assign(v.begin(), v.begin() + len * D);
    for (int64_t p = prefix; p < recent; ++p)  // values: per token and head
      for (int64_t h = 0; h < heads; ++h) {
        std::vector<float> x(&vc[p * D + h * hd], &vc[p * D + h * hd] + hd);
        quantize_plain(x, bits);
        std::copy(x.begin(), x.end(), &vc[p * D + h * hd]);
      }
    for (int64_t b0 = prefix; b0 + group <= recent; b0 += group)  // keys: per channel over a group
      for (int64_t c = 0; c < D; ++c) {
        std::vector<float> x;
        for (int64_t i = 0; i < group; ++i) x.push_back(kc[(b0 + i) * D + c]);
        quantize_plain(x, bits);
        for (int64_t i = 0; i < group; ++i) kc[(b0 + i) * D + c] = x[i];
      }
    for (int64_t p = prefix; p < len; ++p) form(&kc[p * D], p);  // RoPE after dequantization
  }
};

// Cache layer 0 positions [0, len) as [len, kv_dim] (token-major, like the reference).
std::vector<float> token_major(const engine::KVCache& c, bool keys, int64_t layer, int64_t len) {
  std::vector<float> out(len * c.n_kv_heads * c.head_dim);
  for (int64_t p = 0; p < len; ++p)
    for (int64_t h = 0; h < c.n_kv_heads; ++h) {
      const float* src = keys ? c.k_at(layer, h, p) : c.v_at(layer, h, p);
      std::copy_n(src, c.head_dim, &out[(p * c.n_kv_heads + h) * c.head_dim]);
    }
  return out;
}

std::vector<int32_t> wikitext_ids(const model::Weights& w, int64_t n) {
  const auto tok = model::open_tokenizer(test::model_dir("testbed-26M"));
  std::vector<int32_t> ids{w.config.bos_id};
  for (int32_t t : tok->encode(io::read_text_file(test::data_root() + "/datasets/wikitext-2-raw/wiki.test.raw").substr(0, 4000)))
    ids.push_back(t);
  ids.resize(n);
  return ids;
}

}  // namespace

TEST_CASE("KIVI cache == plain reference after every call, through appends and rewinds") {
  model::Config c;
  c.n_layers = 1, c.n_kv_heads = 2, c.head_dim = 8;
  const int64_t D = 16, cap = 96, prefix = 3;
  const kernels::RopeTable rope = kernels::make_rope_table(8, cap, 10000.0f);
  auto form = [&](float* key, int64_t pos) { kernels::rope_rotate(key, 2, 8, pos, rope); };
  engine::KvScheme scheme;
  scheme.keys = engine::KeyQuant::per_channel_prerope;
  for (auto [residual, group] : {std::pair<int64_t, int64_t>{16, 8}, {5, 4}, {0, 1}, {40, 16}}) {
    scheme.residual = residual, scheme.key_group = group;
    engine::KVCache cache = engine::make_kv_cache(c, cap, 3);
    cache.prefix_len = prefix;
    std::vector<float> k = test::gaussian(cap * D, 1), v = test::gaussian(cap * D, 2);
    for (int64_t i = 0; i < prefix * D; ++i) k[i] = 100.f + i, v[i] = -100.f - i;  // never touched
    for (int64_t p = 0; p < prefix; ++p)
      for (int64_t h = 0; h < 2; ++h)
        std::copy_n(&k[p * D + h * 8], 8, cache.k_at(0, h, p)), std::copy_n(&v[p * D + h * 8], 8, cache.v_at(0, h, p));
    const KiviReference ref{2, 8, prefix, residual, group, 3, form};
    uint32_t seed = 10;
    // (p0, n): appends of 1..many tokens, then rewinds to earlier positions with new tokens.
    for (auto [p0, n] : {std::pair<int64_t, int64_t>{3, 20}, {23, 1}, {24, 7}, {31, 30}, {61, 1}, {40, 9}, {12, 2}, {14, 60}}) {
      std::vector<float> nk = test::gaussian(n * D, ++seed), nv = test::gaussian(n * D, ++seed);
      std::copy(nk.begin(), nk.end(), k.begin() + p0 * D);
      std::copy(nv.begin(), nv.end(), v.begin() + p0 * D);
      for (int64_t t = 0; t < n; ++t) {  // what decoder_layer writes: FP keys after RoPE, values
        std::vector<float> key(&nk[t * D], &nk[t * D] + D);
        form(key.data(), p0 + t);
        for (int64_t h = 0; h < 2; ++h)
          std::copy_n(&key[h * 8], 8, cache.k_at(0, h, p0 + t)), std::copy_n(&nv[t * D + h * 8], 8, cache.v_at(0, h, p0 + t));
      }
      engine::kivi_update(cache, 0, scheme, p0, n, nk.data(), nv.data(), form);
      std::vector<float> kc, vc;
      ref.cache(k, v, p0 + n, kc, vc);
      INFO("residual " << residual << " group " << group << " call at " << p0 << " + " << n);
      CHECK(token_major(cache, true, 0, p0 + n) == kc);
      CHECK(token_major(cache, false, 0, p0 + n) == vc);
    }
  }
}

TEST_CASE("KIVI on testbed-26M: layer 0 keys quantized before RoPE; residual ≥ window = FP cache") {
  if (test::data_root().empty()) return;
  const model::Weights w = model::load_model(test::model_dir("testbed-26M"));
  const model::Config& c = w.config;
  const int64_t n = 100;
  const std::vector<int32_t> ids = wikitext_ids(w, n);
  engine::EngineOptions o;
  o.kv.keys = engine::KeyQuant::per_channel_prerope, o.kv.residual = 32, o.kv.key_group = 16;
  const engine::Engine kivi(w, o), plain(w);
  engine::KVCache kc = engine::make_kv_cache(c, n, 4), fp = engine::make_kv_cache(c, n), per_token = engine::make_kv_cache(c, n, 4);
  std::vector<engine::LinearInputs> inputs;
  std::vector<float> lk, lf, lt;
  engine::ForwardTaps taps;
  taps.linear_inputs = &inputs;
  kivi.forward(kc, ids.data(), n, &lk, 0, taps);
  plain.forward(fp, ids.data(), n, &lf);
  plain.forward(per_token, ids.data(), n, &lt);
  // Layer 0's pre-RoPE keys and values as the engine computed them, through the plain reference.
  std::vector<float> k(n * c.kv_dim()), v(n * c.kv_dim()), kref, vref;
  kernels::linear_forward(w.layers[0].k, inputs[0].attn_in.data(), n, k.data());
  kernels::linear_forward(w.layers[0].v, inputs[0].attn_in.data(), n, v.data());
  const kernels::RopeTable rope = kernels::make_rope_table(c.head_dim, c.max_pos, c.rope_theta, c.rope_scaling);
  const KiviReference ref{c.n_kv_heads, c.head_dim, 0, 32, 16, 4,
                          [&](float* key, int64_t pos) { kernels::rope_rotate(key, c.n_kv_heads, c.head_dim, pos, rope); }};
  ref.cache(k, v, n, kref, vref);
  CHECK(token_major(kc, true, 0, n) == kref);
  CHECK(token_major(kc, false, 0, n) == vref);
  CHECK(lk != lf);  // quantized positions change the logits ...
  CHECK(lk != lt);  // ... differently from the per-token quantizer
  // Everything recent: nothing is quantized, the logits are the FP cache's bit for bit.
  o.kv.residual = n;
  engine::KVCache all_recent = engine::make_kv_cache(c, n, 4);
  std::vector<float> lr;
  engine::Engine(w, o).forward(all_recent, ids.data(), n, &lr);
  CHECK(lr == lf);
}

TEST_CASE("massive_tokens: peak ≥ ratio × the median token's peak") {
  // Token peaks 1, 2, 30, 1.5, 9: median 2 (upper median of the sorted 1, 1.5, 2, 9, 30).
  const std::vector<float> x = {1, -0.5f, 2, 0, -30, 1, 1.5f, 0, 0, -9};
  CHECK(engine::massive_tokens(x.data(), 5, 2, 5.0) == std::vector<uint8_t>{0, 0, 1, 0, 0});
  CHECK(engine::massive_tokens(x.data(), 5, 2, 4.5) == std::vector<uint8_t>{0, 0, 1, 0, 1});
  CHECK(engine::massive_tokens(x.data(), 1, 2, 1.0) == std::vector<uint8_t>{0});  // one token: no median
}

TEST_CASE("kv_protect sinks on testbed-26M: <bos> is kept, its K/V bit for bit as computed") {
  if (test::data_root().empty()) return;
  const model::Weights w = model::load_model(test::model_dir("testbed-26M"));
  const model::Config& c = w.config;
  const int64_t n = 128;
  const std::vector<int32_t> ids = wikitext_ids(w, n);
  engine::EngineOptions o;
  o.kv.protect_sinks = true;
  const engine::Engine eng(w, o);
  engine::KVCache cache = engine::make_kv_cache(c, n, 4);
  std::vector<engine::LinearInputs> inputs;
  engine::ForwardTaps taps;
  taps.linear_inputs = &inputs;
  std::vector<float> logits, plain_logits;
  eng.forward(cache, ids.data(), n, &logits, 0, taps);
  REQUIRE(eng.sinks_kept().size() == 1);
  MESSAGE("tokens kept in the window: " << eng.sinks_kept()[0]);
  CHECK(eng.sinks_kept()[0] >= 1);
  CHECK(eng.sinks_kept()[0] <= 4);  // a few sinks, not the text
  int64_t bos_layers = 0, other_kept = 0;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    // The layer's K/V before quantization, from its input as the engine computed it (same GEMM
    // shape, so the same rounding); at position 0 RoPE is the identity.
    std::vector<float> k(n * c.kv_dim()), v(n * c.kv_dim());
    kernels::linear_forward(w.layers[l].k, inputs[l].attn_in.data(), n, k.data());
    kernels::linear_forward(w.layers[l].v, inputs[l].attn_in.data(), n, v.data());
    bool bos_exact = true;
    for (int64_t h = 0; h < c.n_kv_heads; ++h)
      for (int64_t i = 0; i < c.head_dim; ++i)
        bos_exact = bos_exact && cache.k_at(l, h, 0)[i] == k[h * c.head_dim + i] && cache.v_at(l, h, 0)[i] == v[h * c.head_dim + i];
    bool bos_quantized_grid = true;  // a kept V differs from its 4-bit fake quantization
    for (int64_t h = 0; h < c.n_kv_heads; ++h) {
      std::vector<float> q(&v[h * c.head_dim], &v[h * c.head_dim] + c.head_dim);
      quantize_plain(q, 4);
      bos_quantized_grid = bos_quantized_grid && std::equal(q.begin(), q.end(), cache.v_at(l, h, 0));
    }
    CHECK(bos_exact != bos_quantized_grid);  // each layer either keeps <bos> exactly or quantizes it
    bos_layers += bos_exact;
    for (int64_t p = 1; p < n; ++p) {
      bool exact = true;
      for (int64_t i = 0; i < c.head_dim; ++i) exact = exact && cache.v_at(l, 0, p)[i] == v[p * c.kv_dim() + i];
      other_kept += exact;
    }
  }
  MESSAGE("<bos> kept in " << bos_layers << " of " << c.n_layers << " layers; other positions kept " << other_kept);
  CHECK(bos_layers >= c.n_layers / 2);  // from the layer where the pivot forms on
  CHECK(other_kept <= (eng.sinks_kept()[0] - 1) * c.n_layers);
  // Without protection the same window quantizes <bos> everywhere, and the logits differ.
  engine::KVCache q = engine::make_kv_cache(c, n, 4);
  engine::Engine(w).forward(q, ids.data(), n, &plain_logits);
  CHECK(plain_logits != logits);
}
