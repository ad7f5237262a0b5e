#include "intactkv/inspect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "io/error.h"
#include "io/mapped_file.h"
#include "io/text.h"

namespace ikv::intactkv {

PivotReport inspect_pivots(const engine::Engine& eng, const model::Tokenizer& tok, const std::vector<int32_t>& ids,
                           int64_t map_positions, double ratio) {
  const model::Config& c = eng.config();
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n < 2) fail("inspect: need at least 2 tokens, got ", n);
  engine::KVCache cache = engine::make_kv_cache(c, n);
  std::vector<std::vector<float>> outputs, probs;
  engine::ForwardTaps taps;
  taps.layer_outputs = &outputs;
  taps.attention_probs = &probs;
  eng.forward(cache, ids.data(), n, nullptr, n, taps);

  PivotReport r;
  r.pivot_ratio = ratio;
  r.map_positions = std::min(map_positions, n);
  const int64_t N = r.map_positions;
  // Per layer and token: the largest |h| and its channel. A massive activation is large relative
  // to the other tokens of the same layer (the last layers' outputs are large everywhere, so a
  // global maximum would point at them instead of at the pivot).
  std::vector<std::vector<float>> layer_max(c.n_layers, std::vector<float>(n));
  std::vector<std::vector<int64_t>> layer_arg(c.n_layers, std::vector<int64_t>(n));
  std::vector<float> layer_median(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (int64_t t = 0; t < n; ++t)
      for (int64_t ch = 0; ch < c.dim; ++ch) {
        const float a = std::fabs(outputs[l][t * c.dim + ch]);
        if (a > layer_max[l][t]) layer_max[l][t] = a, layer_arg[l][t] = ch;
      }
    std::vector<float> sorted = layer_max[l];
    std::nth_element(sorted.begin(), sorted.begin() + n / 2, sorted.end());
    layer_median[l] = sorted[n / 2];
  }
  r.tokens.resize(n);
  for (int64_t t = 0; t < n; ++t) {
    TokenPeak& p = r.tokens[t];
    p.position = t;
    p.token = ids[t];
    p.piece = tok.piece(ids[t]);
    double best = -1;
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const double ratio_l = layer_max[l][t] / std::max(layer_median[l], 1e-6f);
      if (ratio_l > best) best = ratio_l, p.peak = layer_max[l][t], p.layer = l, p.channel = layer_arg[l][t];
      if (ratio_l >= ratio) p.layers_above.push_back(l);
    }
    p.ratio = best;
  }
  // Attention mass each key position receives: mean over heads and over the queries that can see it.
  r.attention.assign(c.n_layers, std::vector<double>(n, 0));
  r.first_maps.assign(c.n_layers, std::vector<double>(N * N, 0));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::vector<float>& P = probs[l];  // [heads, n, n]
    for (int64_t h = 0; h < c.n_heads; ++h)
      for (int64_t q = 0; q < n; ++q)
        for (int64_t k = 0; k <= q; ++k) {
          const double a = P[(h * n + q) * n + k];
          r.attention[l][k] += a / (c.n_heads * static_cast<double>(n - k));
          if (q < N && k < N) r.first_maps[l][q * N + k] += a / c.n_heads;
        }
  }
  for (int64_t t = 0; t < n; ++t) {
    double m = 0;
    for (int64_t l = 0; l < c.n_layers; ++l) m += r.attention[l][t];
    r.tokens[t].attention_mass = m / c.n_layers;
  }
  r.median_peak = layer_median[r.tokens[0].layer];
  for (int64_t t = 0; t < n; ++t)
    if (!r.tokens[t].layers_above.empty()) r.pivots.push_back(t);
  std::sort(r.pivots.begin(), r.pivots.end(),
            [&](int64_t a, int64_t b) { return r.tokens[a].ratio > r.tokens[b].ratio; });
  return r;
}

AutoSize auto_prefix_size(const PivotReport& report, int64_t prefix_len) {
  AutoSize a;
  std::ostringstream why;
  int64_t last = 0;
  std::vector<int64_t> inside;
  for (int64_t p : report.pivots)
    if (p < prefix_len) inside.push_back(p), last = std::max(last, p);
  std::sort(inside.begin(), inside.end());
  a.size = last + 1;
  why << "auto: " << inside.size() << " pivot token(s) among the prefix's " << prefix_len
      << " tokens (a layer where the token's peak |h| is ≥ " << report.pivot_ratio << "× that layer's median token)";
  for (int64_t p : inside)
    why << "; position " << p << " '" << report.tokens[p].piece << "' peak " << report.tokens[p].peak << " = "
        << report.tokens[p].ratio << "× median (layer "
        << report.tokens[p].layer + 1 << ", channel " << report.tokens[p].channel << ")";
  why << " → IntactKV size " << a.size;
  if (inside.empty()) why << " (no pivot found: keeping <bos> alone)";
  a.explanation = why.str();
  return a;
}

std::string format_inspect_table(const PivotReport& r, int64_t positions) {
  std::ostringstream os;
  char buf[256];
  const int64_t N = std::min<int64_t>(positions, r.tokens.size());
  const int64_t L = static_cast<int64_t>(r.attention.size());
  os << "## Attention mass received by the first " << N << " positions (mean over heads and queries)\n\n| layer |";
  for (int64_t k = 0; k < N; ++k) os << ' ' << k << " |";
  os << "\n|---|";
  for (int64_t k = 0; k < N; ++k) os << "---|";
  os << '\n';
  for (int64_t l = 0; l < L; ++l) {
    os << "| " << l + 1 << " |";
    for (int64_t k = 0; k < N; ++k) {
      std::snprintf(buf, sizeof buf, " %.3f |", r.attention[l][k]);
      os << buf;
    }
    os << '\n';
  }
  os << "\n## Peak |hidden| per token (decoder-layer outputs; the layer where it stands out most)\n\n"
        "| pos | token | peak | × layer median | layer | channel | massive in layers | attention mass |\n"
        "|---|---|---|---|---|---|---|---|\n";
  for (int64_t t = 0; t < N; ++t) {
    const TokenPeak& p = r.tokens[t];
    std::string layers;
    for (int64_t l : p.layers_above) layers += (layers.empty() ? "" : ",") + std::to_string(l + 1);
    std::snprintf(buf, sizeof buf, "| %lld | `%s` | %.1f | %.1f | %lld | %lld | %s | %.3f |\n", (long long)t,
                  io::escape_md(p.piece).c_str(), p.peak, p.ratio, (long long)p.layer + 1, (long long)p.channel, layers.c_str(), p.attention_mass);
    os << buf;
  }
  std::snprintf(buf, sizeof buf, "\npivot threshold: peak ≥ %.0f× the layer's median token peak\n\n", r.pivot_ratio);
  os << buf << "## Pivot candidates (ranked by peak)\n\n";
  if (r.pivots.empty()) os << "none: no token's activation peak stands out; this model has no pivot tokens.\n";
  for (size_t i = 0; i < r.pivots.size(); ++i) {
    const TokenPeak& p = r.tokens[r.pivots[i]];
    std::snprintf(buf, sizeof buf,
                  "%zu. position %lld `%s`: peak %.1f (%.0f× median) at layer %lld channel %lld; attention mass %.3f\n",
                  i + 1, (long long)p.position, io::escape_md(p.piece).c_str(), p.peak, p.ratio, (long long)p.layer + 1,
                  (long long)p.channel, p.attention_mass);
    os << buf;
  }
  return os.str();
}


}  // namespace ikv::intactkv
