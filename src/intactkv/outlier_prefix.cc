#include "intactkv/outlier_prefix.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "io/error.h"

namespace ikv::intactkv {
namespace {

// Per token: max |a[t, :]| over `width` channels.
std::vector<float> token_max(const std::vector<float>& a, int64_t n, int64_t width) {
  std::vector<float> m(n, 0.f);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < width; ++i) m[t] = std::max(m[t], std::fabs(a[t * width + i]));
  return m;
}

double median(std::vector<float> v) {
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + mid, v.end());
  if (v.size() % 2) return v[mid];
  return 0.5 * (double(v[mid]) + *std::max_element(v.begin(), v.begin() + mid));
}

}  // namespace

OutlierPrefixChoice choose_outlier_prefix(const engine::Engine& fp, const std::vector<std::vector<int32_t>>& sequences,
                                          double eta) {
  const model::Config& c = fp.config();
  if (sequences.empty()) fail("outlier prefix: no calibration sequences");
  if (!(eta > 1)) fail("outlier prefix: eta ", eta, " must be > 1");
  std::map<int32_t, OutlierToken> found;
  int64_t total = 0;
  for (const std::vector<int32_t>& seq : sequences) {
    const int64_t n = static_cast<int64_t>(seq.size());
    if (n < 3) fail("outlier prefix: a calibration sequence of ", n, " tokens is too short");
    std::vector<float> x(n * c.dim);
    for (int64_t t = 0; t < n; ++t) {
      if (seq[t] < 0 || seq[t] >= c.vocab) fail("outlier prefix: token id ", seq[t], " is outside the vocabulary");
      fp.weights().embed.row(seq[t], &x[t * c.dim]);
    }
    std::vector<double> ratio(n, 0.0);  // each position's largest ratio over layers and inputs
    for (int64_t l = 0; l < c.n_layers; ++l) {
      engine::LinearInputs in;
      fp.layer_forward(l, x.data(), n, &in);
      for (const auto& [a, width] : {std::pair{&in.attn_in, c.dim}, std::pair{&in.down_in, c.hidden}}) {
        const std::vector<float> m = token_max(*a, n, width);
        const double med = median(m);
        for (int64_t t = 1; t < n; ++t) ratio[t] = std::max(ratio[t], med > 0 ? m[t] / med : 0.0);
      }
    }
    for (int64_t t = 1; t < n; ++t) {
      if (!(ratio[t] > eta)) continue;
      ++total;
      OutlierToken& o = found[seq[t]];
      o.token = seq[t];
      ++o.count;
      o.max_ratio = std::max(o.max_ratio, ratio[t]);
    }
  }
  OutlierPrefixChoice r;
  r.mean_outliers = static_cast<double>(total) / static_cast<double>(sequences.size());
  r.n = static_cast<int64_t>(std::ceil(r.mean_outliers));
  for (const auto& [id, o] : found)
    if (id != c.bos_id) r.ranked.push_back(o);  // <bos> is in the prefix already
  std::sort(r.ranked.begin(), r.ranked.end(), [](const OutlierToken& a, const OutlierToken& b) {
    if (a.count != b.count) return a.count > b.count;
    if (a.max_ratio != b.max_ratio) return a.max_ratio > b.max_ratio;
    return a.token < b.token;
  });
  r.n = std::min<int64_t>(r.n, static_cast<int64_t>(r.ranked.size()));
  r.tokens = c.bos_tokens();
  for (int64_t i = 0; i < r.n; ++i) r.tokens.push_back(r.ranked[i].token);
  if (r.tokens.empty())
    fail("outlier prefix: no token exceeds ", eta, " x the median activation and the model has no <bos>; use IntactKV "
         "'system' instead");
  return r;
}

}  // namespace ikv::intactkv
