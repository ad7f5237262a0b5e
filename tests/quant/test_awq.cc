// AWQ: the fold of the searched scales is exact in FP on testbed-26M (GQA v → o fold included), the
// scale search picks the grid's lowest loss (brute force on a synthetic linear), α = 0 is RTN, and
// the clipping search never raises a group's error on the tokens it searched.
#include <algorithm>
#include <cmath>
#include <random>

#include "engine/forward.h"
#include "io/mapped_file.h"
#include "model/tokenizer.h"
#include "quant/awq_search.h"
#include "quant/rtn.h"
#include "test_util.h"

using namespace ikv;
using kernels::QuantSpec;

namespace {

// X [n, in] with per-channel magnitudes spread over two orders (a few outlier channels, as LLM
// activations have), W [out, in] Gaussian.
struct Synthetic {
  int64_t n, in, out;
  std::vector<float> X, W, mean_abs;
};

Synthetic synthetic(int64_t n, int64_t in, int64_t out, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> mag(in);
  for (float& m : mag) m = std::exp(1.2f * nd(rng));
  Synthetic s{n, in, out, std::vector<float>(n * in), std::vector<float>(out * in), std::vector<float>(in, 0.0f)};
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < in; ++j) s.X[t * in + j] = mag[j] * nd(rng);
  for (float& w : s.W) w = nd(rng);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < in; ++j) s.mean_abs[j] += std::fabs(s.X[t * in + j]) / n;
  return s;
}

// mean over (t, o) of (Σ_j x[t,j] (B[o,j] − A[o,j]))², the naive way in double.
double output_mse(const Synthetic& s, const std::vector<float>& A, const std::vector<float>& B) {
  double e = 0;
  for (int64_t t = 0; t < s.n; ++t)
    for (int64_t o = 0; o < s.out; ++o) {
      double d = 0;
      for (int64_t j = 0; j < s.in; ++j) d += double(s.X[t * s.in + j]) * (double(B[o * s.in + j]) - A[o * s.in + j]);
      e += d * d;
    }
  return e / double(s.n * s.out);
}

std::vector<float> fake(const std::vector<float>& w, int64_t rows, int64_t cols, const QuantSpec& spec) {
  std::vector<float> q(w.size());
  quant::fake_quantize_rtn(w.data(), rows, cols, spec, q.data());
  return q;
}

}  // namespace

TEST_CASE("awq scales: x^alpha floored at 1e-4, normalized by sqrt(max * min); alpha = 0 is all ones") {
  const std::vector<float> x = {4.0f, 1.0f, 0.25f, 0.0f};
  const auto one = quant::awq_scales(x, 0.0);
  CHECK(one == std::vector<float>(4, 1.0f));
  // alpha 0.5: {2, 1, 0.5, 1e-4} / sqrt(2 * 1e-4).
  const auto h = quant::awq_scales(x, 0.5);
  const float norm = std::sqrt(2.0f * 1e-4f);
  CHECK(h[0] == doctest::Approx(2.0f / norm));
  CHECK(h[1] == doctest::Approx(1.0f / norm));
  CHECK(h[2] == doctest::Approx(0.5f / norm));
  CHECK(h[3] == doctest::Approx(1e-4f / norm));
}

TEST_CASE("awq scale search on a synthetic linear == brute force over the grid; alpha = 0 is RTN's loss") {
  for (const QuantSpec spec : {QuantSpec{3, 16, false}, QuantSpec{4, -1, true}, QuantSpec{3, 8, true}}) {
    INFO("bits " << spec.bits << " group " << spec.group << " sym " << spec.sym);
    const Synthetic s = synthetic(96, 64, 24, 7);
    const int grid = 20;
    const quant::ScaleSearch r =
        quant::search_linear_scale(s.X.data(), s.n, s.W.data(), s.out, s.in, s.mean_abs, spec, grid);
    REQUIRE(r.losses.size() == static_cast<size_t>(grid));
    // Brute force, written out independently: s = max(m^α, 1e-4) / sqrt(max · min), Ŵ = Q(W s) / s.
    std::vector<double> brute(grid);
    for (int i = 0; i < grid; ++i) {
      std::vector<float> sc(s.in);
      for (int64_t j = 0; j < s.in; ++j) sc[j] = std::max(std::pow(s.mean_abs[j], float(i) / grid), 1e-4f);
      const float hi = *std::max_element(sc.begin(), sc.end()), lo = *std::min_element(sc.begin(), sc.end());
      for (float& v : sc) v /= std::sqrt(hi * lo);
      std::vector<float> ws(s.W.size());
      for (int64_t o = 0; o < s.out; ++o)
        for (int64_t j = 0; j < s.in; ++j) ws[o * s.in + j] = s.W[o * s.in + j] * sc[j];
      std::vector<float> q = fake(ws, s.out, s.in, spec);
      for (int64_t o = 0; o < s.out; ++o)
        for (int64_t j = 0; j < s.in; ++j) q[o * s.in + j] /= sc[j];
      brute[i] = output_mse(s, s.W, q);
      CHECK(r.losses[i] == doctest::Approx(brute[i]).epsilon(1e-4));
    }
    const double best = *std::min_element(brute.begin(), brute.end());
    CHECK(brute[r.best] <= best * (1 + 1e-4));
    CHECK(r.alpha == doctest::Approx(double(r.best) / grid));
    // α = 0 is plain RTN, and the search never ends above it.
    CHECK(r.losses[0] == doctest::Approx(output_mse(s, s.W, fake(s.W, s.out, s.in, spec))).epsilon(1e-4));
    CHECK(r.losses[r.best] <= r.losses[0]);
    // Outlier channels make scaling pay: the search must find that (else the checks above are vacuous).
    CHECK(r.best > 0);
    CHECK(r.losses[r.best] < 0.9 * r.losses[0]);
  }
}

TEST_CASE("awq clipping search never raises a group's output error on the tokens it searched") {
  for (const QuantSpec spec : {QuantSpec{3, 16, false}, QuantSpec{3, -1, true}, QuantSpec{4, 32, false}}) {
    INFO("bits " << spec.bits << " group " << spec.group << " sym " << spec.sym);
    Synthetic s = synthetic(64, 64, 20, 11);
    // Heavy-tailed weights (a few large entries per row) are where clipping helps.
    std::mt19937 rng(5);
    std::student_t_distribution<float> td(2.0f);
    for (float& w : s.W) w = td(rng);
    const int64_t G = spec.group == -1 ? s.in : spec.group, groups = s.in / G;
    const auto max_val = quant::search_clip(s.W.data(), s.out, s.in, s.X.data(), s.n, spec, 20, 0.5);
    REQUIRE(max_val.size() == static_cast<size_t>(s.out * groups));
    // Each (row, group) on its own, recomputed with fake_quantize_rtn: error of the clipped group vs
    // the unclipped one, both against the original weights.
    const QuantSpec one{spec.bits, static_cast<int>(G), spec.sym};
    int improved = 0, clipped = 0;
    for (int64_t o = 0; o < s.out; ++o)
      for (int64_t g = 0; g < groups; ++g) {
        std::vector<float> w(s.W.begin() + o * s.in + g * G, s.W.begin() + o * s.in + (g + 1) * G), c = w;
        float amax = 0;
        for (float v : w) amax = std::max(amax, std::fabs(v));
        const float mv = max_val[o * groups + g];
        CHECK(mv <= amax);
        CHECK(mv >= 0.5f * amax);
        for (float& v : c) v = std::clamp(v, -mv, mv);
        const auto qn = fake(w, 1, G, one), qc = fake(c, 1, G, one);
        double en = 0, ec = 0;
        for (int64_t t = 0; t < s.n; ++t) {
          double dn = 0, dc = 0;
          for (int64_t j = 0; j < G; ++j) {
            const double x = s.X[t * s.in + g * G + j];
            dn += x * (qn[j] - w[j]);
            dc += x * (qc[j] - w[j]);
          }
          en += dn * dn;
          ec += dc * dc;
        }
        CHECK(ec <= en * (1 + 1e-5));
        improved += ec < 0.99 * en;
        clipped += mv < amax;
      }
    CHECK(improved > 0);
    CHECK(clipped > 0);
    // apply_clip clamps each group to its own range.
    std::vector<float> w = s.W;
    quant::apply_clip(w.data(), s.out, s.in, spec, max_val);
    for (int64_t o = 0; o < s.out; ++o)
      for (int64_t j = 0; j < s.in; ++j)
        CHECK(w[o * s.in + j] == std::clamp(s.W[o * s.in + j], -max_val[o * groups + j / G], max_val[o * groups + j / G]));
  }
}

TEST_CASE("awq on testbed-26M: folding the searched scales leaves the FP logits unchanged (GQA v->o fold too)") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("testbed-26M"));
  const model::Config& c = w.config;
  REQUIRE(c.n_kv_heads < c.n_heads);  // the per-kv-head v -> o fold is exercised
  const auto tokenizer = model::open_tokenizer(test::model_dir("testbed-26M"));
  const model::Tokenizer& tok = *tokenizer;
  std::vector<int32_t> ids{c.bos_id};
  for (int32_t t : tok.encode(io::read_text_file(test::data_root() + "/README-sample.txt"))) ids.push_back(t);
  ids.resize(std::min<size_t>(ids.size(), 160));
  REQUIRE(ids.size() >= 120);
  const engine::Engine e(w);
  auto logits = [&] {
    engine::KVCache kv = engine::make_kv_cache(c, static_cast<int64_t>(ids.size()));
    std::vector<float> out;
    e.forward(kv, ids.data(), static_cast<int64_t>(ids.size()), &out);
    return out;
  };
  const std::vector<float> before = logits();
  // Calibration: two sequences from the text (each after <bos>).
  std::vector<std::vector<float>> hidden;
  for (auto [b, n] : {std::pair<size_t, size_t>{1, 63}, {64, 47}}) {
    std::vector<int32_t> seq{c.bos_id};
    seq.insert(seq.end(), ids.begin() + b, ids.begin() + b + n);
    std::vector<float> x;
    for (int32_t t : seq) {
      x.resize(x.size() + c.dim);
      w.embed.row(t, x.data() + x.size() - c.dim);
    }
    hidden.push_back(std::move(x));
  }
  quant::AwqOptions opt;
  opt.spec = {3, 128, false};
  opt.fold_v_o = true;
  const kernels::RopeTable rope = kernels::make_rope_table(c.head_dim, c.max_pos, c.rope_theta);
  int scaled = 0;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    // The search and the fold work on dense fp32 weights (quantize_model_awq expands a layer at a
    // time, as here): testbed-26M's fp16 weights upcast exactly.
    model::LayerWeights& L = w.layers[l];
    for (kernels::Linear* li : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) kernels::expand_to_f32(*li);
    const quant::AwqLayerInputs in = quant::collect_awq_inputs(e, l, hidden, opt);
    CHECK(in.search_lens == std::vector<int64_t>{64, 48});
    const quant::AwqLayerScales s = quant::search_awq_scales(w.layers[l], c, rope, in, opt);
    REQUIRE(s.losses.size() == 4);
    for (const auto& g : s.losses) {
      INFO("layer " << l << " group " << g.group);
      CHECK(g.awq <= g.rtn);  // α = 0 (RTN) is on the grid
      scaled += g.alpha > 0;
    }
    CHECK(s.o.size() == static_cast<size_t>(c.kv_dim()));
    quant::fold_awq_scales(w.layers[l], c, s);
    for (auto& x : hidden) e.layer_forward(l, x.data(), static_cast<int64_t>(x.size()) / c.dim);
  }
  CHECK(scaled > 0);  // a fold of all-ones scales would prove nothing
  const std::vector<float> after = logits();
  double diff = 0, mag = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    diff = std::max(diff, double(std::fabs(after[i] - before[i])));
    mag = std::max(mag, double(std::fabs(before[i])));
  }
  MESSAGE("max |logit diff| after the fold = " << diff << " (max |logit| " << mag << ")");
  CHECK(diff < 1e-5 * mag);
}
