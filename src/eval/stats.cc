#include "eval/stats.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "io/error.h"

namespace ikv::eval {
namespace {

// Uniform integer in [0, n) by rejection: std::uniform_int_distribution's algorithm differs between
// standard libraries, which would make the same seed give different intervals on different builds.
uint64_t draw_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = (UINT64_MAX / n) * n;  // largest multiple of n representable
  uint64_t x;
  do x = rng();
  while (x >= limit);
  return x % n;
}

double percentile(const std::vector<double>& sorted, double q) {
  double pos = q * static_cast<double>(sorted.size() - 1);
  size_t i = static_cast<size_t>(std::floor(pos));
  if (i + 1 >= sorted.size()) return sorted.back();
  double frac = pos - static_cast<double>(i);
  return sorted[i] + frac * (sorted[i + 1] - sorted[i]);
}

}  // namespace

MeanStderr mean_stderr(const std::vector<double>& x) {
  MeanStderr r;
  r.n = static_cast<int64_t>(x.size());
  if (x.empty()) return r;
  double sum = 0;
  for (double v : x) sum += v;
  r.mean = sum / static_cast<double>(r.n);
  if (r.n < 2) return r;
  double ss = 0;
  for (double v : x) ss += (v - r.mean) * (v - r.mean);
  r.stderr_ = std::sqrt(ss / static_cast<double>(r.n - 1)) / std::sqrt(static_cast<double>(r.n));
  return r;
}

BootstrapCI paired_bootstrap(const std::vector<double>& a, const std::vector<double>& b, int resamples,
                             uint64_t seed, double confidence) {
  if (a.size() != b.size())
    fail("paired bootstrap: the two outcome vectors differ in length (", a.size(), " vs ", b.size(),
         "); they must score the same items");
  if (a.empty()) fail("paired bootstrap: no items");
  if (resamples < 1) fail("paired bootstrap: resamples must be >= 1, got ", resamples);
  if (!(confidence > 0 && confidence < 1)) fail("paired bootstrap: confidence must be in (0, 1), got ", confidence);

  const size_t n = a.size();
  std::vector<double> d(n);
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += d[i] = b[i] - a[i];

  std::mt19937_64 rng(seed);
  std::vector<double> diffs(static_cast<size_t>(resamples));
  for (double& out : diffs) {
    double s = 0;
    for (size_t k = 0; k < n; ++k) s += d[draw_below(rng, n)];
    out = s / static_cast<double>(n);
  }
  std::sort(diffs.begin(), diffs.end());

  BootstrapCI ci;
  ci.diff = total / static_cast<double>(n);
  ci.lo = percentile(diffs, (1 - confidence) / 2);
  ci.hi = percentile(diffs, (1 + confidence) / 2);
  ci.resamples = resamples;
  return ci;
}

}  // namespace ikv::eval
