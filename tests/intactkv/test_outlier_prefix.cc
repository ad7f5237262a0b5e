// PrefixQuant's data-chosen prefix: the detector's rule (max/median > eta per layer, position 0
// excluded, n = ceil(mean count)), checked against a direct recomputation of its attention-input
// half on testbed-26M.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "engine/forward.h"
#include "intactkv/outlier_prefix.h"
#include "io/error.h"
#include "io/mapped_file.h"
#include "model/tokenizer.h"
#include "test_util.h"

using namespace ikv;

namespace {

// Each position's largest max|x|/median ratio, recomputed from the full forward's layer outputs
// (the residual stream) rather than through layer_forward's linear inputs: the attention input
// is rmsnorm(h)·attn_norm of the previous layer's output, taken here with its own arithmetic.
std::vector<double> attn_input_ratios(const model::Weights& w, const std::vector<int32_t>& seq) {
  const model::Config& c = w.config;
  const int64_t n = seq.size(), D = c.dim;
  engine::Engine e(w);
  engine::KVCache cache = engine::make_kv_cache(c, n);
  std::vector<std::vector<float>> outs;
  e.forward(cache, seq.data(), n, nullptr, n, {&outs});
  std::vector<double> best(n, 0);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    std::vector<float> h(n * D);
    if (l == 0)
      for (int64_t t = 0; t < n; ++t) w.embed.row(seq[t], &h[t * D]);
    else
      h = outs[l - 1];
    std::vector<float> m(n);
    for (int64_t t = 0; t < n; ++t) {
      double ss = 0;
      for (int64_t i = 0; i < D; ++i) ss += double(h[t * D + i]) * h[t * D + i];
      const double inv = 1 / std::sqrt(ss / D + c.norm_eps);
      float mx = 0;
      for (int64_t i = 0; i < D; ++i) mx = std::max(mx, float(std::fabs(h[t * D + i] * inv * w.layers[l].attn_norm[i])));
      m[t] = mx;
    }
    std::vector<float> sorted = m;
    std::sort(sorted.begin(), sorted.end());
    const double med = n % 2 ? sorted[n / 2] : 0.5 * (double(sorted[n / 2 - 1]) + sorted[n / 2]);
    for (int64_t t = 1; t < n; ++t) best[t] = std::max(best[t], m[t] / med);
  }
  return best;
}

}  // namespace

TEST_CASE("outlier prefix on testbed-26M: <bos> first, then the most frequent outlier tokens") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("testbed-26M"));
  const auto tok = model::open_tokenizer(test::model_dir("testbed-26M"));
  const std::string text = io::read_text_file(test::data_root() + "/datasets/wikitext-2-raw/wiki.test.raw");
  std::vector<int32_t> ids = tok->encode(text.substr(0, 20000));
  std::vector<std::vector<int32_t>> seqs;
  for (int s = 0; s < 6; ++s) {
    std::vector<int32_t> seq{w.config.bos_id};
    seq.insert(seq.end(), ids.begin() + s * 200, ids.begin() + (s + 1) * 200);
    seqs.push_back(seq);
  }
  engine::Engine e(w);
  // testbed-26M's one massive pivot is <bos> (position 0, always in the prefix): at PrefixQuant's
  // eta = 64 nothing else qualifies (below); at 5 its second-tier pivot, the newline, does.
  const double eta = 5.0;
  const intactkv::OutlierPrefixChoice r = intactkv::choose_outlier_prefix(e, seqs, eta);
  REQUIRE(!r.tokens.empty());
  CHECK(r.tokens[0] == w.config.bos_id);
  CHECK(r.n == static_cast<int64_t>(std::ceil(r.mean_outliers)));
  CHECK(static_cast<int64_t>(r.tokens.size()) == 1 + r.n);
  std::string chosen;
  for (const auto& o : r.ranked) chosen += " '" + tok->piece(o.token) + "' x" + std::to_string(o.count);
  MESSAGE("testbed-26M: " << r.mean_outliers << " outliers per sequence; ranked:" << chosen);
  for (size_t i = 1; i < r.ranked.size(); ++i) CHECK(r.ranked[i - 1].count >= r.ranked[i].count);
  int64_t counted = 0;
  REQUIRE(r.n >= 1);
  CHECK(tok->piece(r.tokens[1]) == "<0x0A>");
  for (const auto& o : r.ranked) {
    CHECK(o.max_ratio > eta);
    counted += o.count;
  }
  // The attention-input half of the rule, recomputed independently: every position whose ratio
  // there exceeds eta is counted (the detector may count more, from down_proj's input).
  std::map<int32_t, int64_t> attn_count;
  for (const auto& seq : seqs) {
    const std::vector<double> ratio = attn_input_ratios(w, seq);
    for (size_t t = 1; t < seq.size(); ++t)
      if (ratio[t] > eta) ++attn_count[seq[t]];
  }
  for (const auto& [id, count] : attn_count) {
    const auto it = std::find_if(r.ranked.begin(), r.ranked.end(), [&](const auto& o) { return o.token == id; });
    REQUIRE(it != r.ranked.end());
    CHECK(it->count >= count);
  }
  CHECK(counted == static_cast<int64_t>(std::llround(r.mean_outliers * seqs.size())));
  // At PrefixQuant's eta the prefix is <bos> alone: IntactKV_[B].
  const intactkv::OutlierPrefixChoice none = intactkv::choose_outlier_prefix(e, seqs, 64.0);
  CHECK(none.tokens == std::vector<int32_t>{w.config.bos_id});
  CHECK(none.n == 0);
  CHECK_THROWS_WITH_AS(intactkv::choose_outlier_prefix(e, {}, 64.0), doctest::Contains("no calibration sequences"),
                       Error);
}
