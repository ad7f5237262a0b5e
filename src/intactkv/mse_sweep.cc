#include "intactkv/mse_sweep.h"

#include <cstdio>
#include <sstream>

#include "intactkv/prefix.h"
#include "io/error.h"
#include "quant/quarot.h"

namespace ikv::intactkv {

MseSweepResult mse_sweep(const engine::Engine& fp, const engine::Engine& quant, const std::vector<int32_t>& prefix,
                         const std::vector<std::vector<int32_t>>& samples, int64_t max_size, int kv_bits) {
  const model::Config& c = fp.config();
  const int64_t N = static_cast<int64_t>(prefix.size());
  if (max_size < 0 || max_size > N) fail("mse-sweep: max size ", max_size, " must be within the prefix's ", N, " tokens");
  MseSweepResult r;
  for (int64_t s = 0; s <= max_size; ++s) r.sizes.push_back(s);
  r.layer_mse.assign(r.sizes.size(), std::vector<double>(c.n_layers, 0));
  std::vector<Prefix> prefixes(r.sizes.size());
  for (int64_t s = 1; s <= max_size; ++s)
    prefixes[s] = build_prefix(fp, std::vector<int32_t>(prefix.begin(), prefix.begin() + s));

  for (const auto& ids : samples) {
    const int64_t n = static_cast<int64_t>(ids.size());
    if (n <= N || !std::equal(prefix.begin(), prefix.end(), ids.begin()))
      fail("mse-sweep: every sample must start with the prefix and extend past it");
    // FP targets: the FP model with its own (unquantized) cache.
    engine::KVCache fc = engine::make_kv_cache(c, n);
    std::vector<std::vector<float>> target, out;
    engine::ForwardTaps ft;
    ft.layer_outputs = &target;
    fp.forward(fc, ids.data(), n, nullptr, n, ft);
    for (auto& t : target) ikv::quant::residual_to_model(quant.weights(), t.data(), n);  // QuaRot: its coordinates
    for (size_t si = 0; si < r.sizes.size(); ++si) {
      const int64_t s = r.sizes[si];
      engine::KVCache qc = engine::make_kv_cache(c, n, kv_bits);
      if (s > 0) install_prefix(qc, prefixes[si], quant);
      engine::ForwardTaps qt;
      qt.layer_outputs = &out;
      quant.forward(qc, ids.data() + s, n - s, nullptr, n - s, qt);
      // Compare on positions N..n-1 (after the whole prefix), the same tokens for every size.
      for (int64_t l = 0; l < c.n_layers; ++l) {
        double sum = 0;
        for (int64_t t = N; t < n; ++t)
          for (int64_t d = 0; d < c.dim; ++d) {
            const double e = out[l][(t - s) * c.dim + d] - target[l][t * c.dim + d];
            sum += e * e;
          }
        r.layer_mse[si][l] += sum;
      }
    }
    r.tokens += n - N;
    ++r.samples;
  }
  for (auto& row : r.layer_mse) {
    double mean = 0;
    for (double& v : row) v /= static_cast<double>(r.tokens * c.dim), mean += v;
    r.last_layer_mse.push_back(row.back());
    r.mean_layer_mse.push_back(mean / c.n_layers);
  }
  return r;
}

std::string format_mse_sweep(const MseSweepResult& r) {
  std::ostringstream os;
  char buf[64];
  const size_t L = r.layer_mse.empty() ? 0 : r.layer_mse[0].size();
  os << "| IntactKV size |";
  for (size_t l = 0; l < L; ++l) os << " layer " << l + 1 << " |";
  os << " mean |\n|---|";
  for (size_t l = 0; l <= L; ++l) os << "---|";
  os << '\n';
  for (size_t i = 0; i < r.sizes.size(); ++i) {
    os << "| " << r.sizes[i] << " |";
    for (double v : r.layer_mse[i]) std::snprintf(buf, sizeof buf, " %.4g |", v), os << buf;
    std::snprintf(buf, sizeof buf, " %.4g |\n", r.mean_layer_mse[i]);
    os << buf;
  }
  os << "\n" << r.samples << " samples, " << r.tokens << " tokens after the prefix per size\n";
  return os.str();
}


}  // namespace ikv::intactkv
