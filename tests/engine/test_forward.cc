// Forward-pass invariants on real models: prefill == step-by-step decode, the llama2.c .bin and
// the HF folder give the same logits, and the reference NLL published in models/MANIFEST.md.
#include <algorithm>
#include <cmath>

#include "engine/forward.h"
#include "kernels/ops.h"
#include "io/mapped_file.h"
#include "model/tokenizer.h"
#include "test_util.h"

using namespace ikv;

namespace {

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

std::vector<int32_t> sample_ids(const std::string& model, size_t n) {
  const auto tokenizer = model::open_tokenizer(test::model_dir(model));
  const model::Tokenizer& tok = *tokenizer;
  std::vector<int32_t> ids{1};
  for (int32_t t : tok.encode(io::read_text_file(test::data_root() + "/README-sample.txt"))) ids.push_back(t);
  ids.resize(std::min(n, ids.size()));
  return ids;
}

}  // namespace

TEST_CASE("prefill logits equal token-by-token decode logits (GQA, untied and tied heads)") {
  if (test::data_root().empty()) return;
  for (const char* name : {"testbed-26M", "stories260K"}) {
    model::Weights w = model::load_model(test::model_dir(name));
    engine::Engine eng(w);
    std::vector<int32_t> ids = sample_ids(name, 48);
    const int64_t n = ids.size(), V = w.config.vocab;
    engine::KVCache a = engine::make_kv_cache(w.config, n), b = engine::make_kv_cache(w.config, n);
    std::vector<float> prefill, step, decode;
    eng.forward(a, ids.data(), n, &prefill);
    // Decode: first a 5-token prefill, then one token at a time.
    eng.forward(b, ids.data(), 5, &step);
    decode = step;
    for (int64_t t = 5; t < n; ++t) {
      eng.forward(b, &ids[t], 1, &step);
      decode.insert(decode.end(), step.begin(), step.end());
    }
    REQUIRE(decode.size() == static_cast<size_t>(n * V));
    // Only the summation order differs (GEMM blocking for M=1 vs M=n): fp32 rounding, amplified
    // over 5-6 layers, stays ~1e-5 on logits of magnitude ~10.
    const double err = max_abs_diff(prefill, decode);
    MESSAGE(std::string(name) << " prefill vs decode max |diff| = " << err);
    CHECK(err < 1e-4);
    CHECK(a.len == n);
  }
}

TEST_CASE("forward_packed: sequences packed in one forward match their own forwards; a row's bits do not depend on its batch") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("testbed-26M"));
  engine::Engine eng(w);
  const int64_t V = w.config.vocab;
  std::vector<int32_t> ids = sample_ids("testbed-26M", 300);
  REQUIRE(ids.size() >= 130);
  // Sequence A = ids[0..40); sequence B shares A's first 20 tokens, then ids[100..130).
  std::vector<int32_t> a(ids.begin(), ids.begin() + 40), b(ids.begin(), ids.begin() + 20);
  b.insert(b.end(), ids.begin() + 100, ids.begin() + 130);
  std::vector<float> la, lb;
  {
    engine::KVCache ca = engine::make_kv_cache(w.config, 64), cb = engine::make_kv_cache(w.config, 64);
    eng.forward(ca, a.data(), 40, &la);
    eng.forward(cb, b.data(), 50, &lb);
  }
  // Packed: A's 40 tokens (slots 0..39), then B's own 30 tokens (slots 40..69) seeing A's first 20.
  auto packed_logits = [&](int64_t filler) {
    // `filler` unrelated rows first (a one-token-at-a-time sequence elsewhere in the cache).
    engine::KVCache cache = engine::make_kv_cache(w.config, 512);
    kernels::PackedRows rows;
    std::vector<int32_t> tokens;
    for (int64_t i = 0; i < filler; ++i) {
      rows.add_segment(i % 7, 300 + i, {});
      tokens.push_back(ids[(7 * i) % ids.size()]);
    }
    const int64_t s0 = 10 + filler;
    rows.add_segment(0, s0, {});
    for (int i = 1; i < 40; ++i) rows.extend_last();
    rows.add_segment(20, s0 + 40, {{s0, 20, 0}});
    for (int i = 1; i < 30; ++i) rows.extend_last();
    tokens.insert(tokens.end(), a.begin(), a.end());
    tokens.insert(tokens.end(), b.begin() + 20, b.end());
    std::vector<int64_t> want;
    for (int64_t r = 0; r < 70; ++r) want.push_back(filler + r);
    std::vector<float> logits;
    eng.forward_packed(cache, tokens.data(), rows, want, &logits);
    REQUIRE(logits.size() == size_t(70 * V));
    return logits;
  };
  const std::vector<float> p0 = packed_logits(0);
  double err = 0;
  for (int64_t i = 0; i < 40 * V; ++i) err = std::max(err, double(std::fabs(p0[i] - la[i])));
  for (int64_t i = 0; i < 30 * V; ++i) err = std::max(err, double(std::fabs(p0[40 * V + i] - lb[20 * V + i])));
  MESSAGE("packed vs own forwards max |diff| = " << err);
  CHECK(err < 1e-4);
  // Other rows before them (different places in the 128-row blocks, another batch size): same bits.
  for (int64_t filler : {1, 57, 200}) CHECK(packed_logits(filler) == p0);
}

TEST_CASE("stories260K: llama2.c .bin and HF folder give the same logits") {
  if (test::data_root().empty()) return;
  model::Weights hf = model::load_model(test::model_dir("stories260K"));
  model::Weights bin = model::load_model(test::model_dir("stories260K") + "/original/stories260K.bin");
  std::vector<int32_t> ids = sample_ids("stories260K", 100);
  std::vector<float> la, lb;
  engine::Engine ea(hf), eb(bin);
  engine::KVCache ca = engine::make_kv_cache(hf.config, ids.size()), cb = engine::make_kv_cache(bin.config, ids.size());
  ea.forward(ca, ids.data(), ids.size(), &la);
  eb.forward(cb, ids.data(), ids.size(), &lb);
  CHECK(max_abs_diff(la, lb) == 0.0);  // identical weights after the permutation: bit-identical logits
}

TEST_CASE("reference NLL of models/MANIFEST.md (stories260K 1.621112, llama2xs 2.208327)") {
  if (test::data_root().empty()) return;
  struct Case {
    const char* model;
    double nll;
  };
  for (Case c : {Case{"stories260K", 1.621112427}, Case{"llama2xs", 2.208326443}}) {
    model::Weights w = model::load_model(test::model_dir(c.model));
    const auto tokenizer = model::open_tokenizer(test::model_dir(c.model));
    const model::Tokenizer& tok = *tokenizer;
    std::string text = io::read_text_file(test::data_root() + "/README-sample.txt").substr(0, 2000);
    std::vector<int32_t> ids{1};
    for (int32_t t : tok.encode(text)) ids.push_back(t);
    const int64_t L = w.config.max_pos;
    engine::Engine eng(w);
    double nll = 0;
    int64_t count = 0;
    for (int64_t i = 0; i + 1 < static_cast<int64_t>(ids.size()); i += L) {
      const int64_t n = std::min<int64_t>(L, ids.size() - 1 - i);
      engine::KVCache cache = engine::make_kv_cache(w.config, n);
      std::vector<float> logits;
      eng.forward(cache, &ids[i], n, &logits);
      for (int64_t t = 0; t < n; ++t) {
        const float* row = &logits[t * w.config.vocab];
        double mx = *std::max_element(row, row + w.config.vocab), s = 0;
        for (int64_t j = 0; j < w.config.vocab; ++j) s += std::exp(row[j] - mx);
        nll += std::log(s) + mx - row[ids[i + t + 1]];
        ++count;
      }
    }
    // The manifest's fp64 value; fp32 implementations there differ from it by < 3e-7.
    CHECK(std::fabs(nll / count - c.nll) < 2e-6);
    CHECK(count == (c.model == std::string("stories260K") ? 957 : 957));
  }
}

TEST_CASE("layer_forward, layer after layer, reproduces forward's layer outputs; its linear inputs match") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("testbed-26M"));
  engine::Engine eng(w);
  std::vector<int32_t> ids = sample_ids("testbed-26M", 40);
  const int64_t n = ids.size(), D = w.config.dim;
  engine::KVCache cache = engine::make_kv_cache(w.config, n);
  std::vector<std::vector<float>> outs;
  eng.forward(cache, ids.data(), n, nullptr, n, {&outs, nullptr});
  std::vector<float> x(n * D);
  for (int64_t t = 0; t < n; ++t)
    w.embed.row(ids[t], &x[t * D]);
  for (int64_t l = 0; l < w.config.n_layers; ++l) {
    engine::LinearInputs in;
    std::vector<float> x_in = x;
    eng.layer_forward(l, x.data(), n, &in);
    // Same code path, same order of operations: bitwise equal.
    CHECK(max_abs_diff(x, outs[l]) == 0.0);
    REQUIRE(in.attn_in.size() == size_t(n * D));
    REQUIRE(in.down_in.size() == size_t(n * w.config.hidden));
    // attn_in is the RMS-normed layer input: recompute one row by hand.
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += double(x_in[5 * D + i]) * x_in[5 * D + i];
    const double r = 1.0 / std::sqrt(ss / D + w.config.norm_eps);
    for (int64_t i = 0; i < D; i += 37)
      CHECK(in.attn_in[5 * D + i] == doctest::Approx(x_in[5 * D + i] * r * w.layers[l].attn_norm[i]).epsilon(1e-5));
  }
}
