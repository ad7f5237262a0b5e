// Summary statistics for evaluation results: the mean with lm-evaluation-harness's standard
// error, and a paired bootstrap confidence interval for the difference of two systems scored on
// the same items (e.g. a quantized model without and with IntactKV).
#pragma once
#include <cstdint>
#include <vector>

namespace ikv::eval {

struct MeanStderr {
  double mean = 0;
  double stderr_ = 0;  // `stderr` is a macro of <cstdio>
  int64_t n = 0;
};

// Mean and the standard error of the mean as lm-eval computes it (metrics.mean_stderr):
// sample standard deviation (n − 1 denominator) / sqrt(n). For 0/1 outcomes this is
// sqrt(p(1 − p) / (n − 1)). n < 2 gives stderr 0; an empty vector gives {0, 0, 0}.
MeanStderr mean_stderr(const std::vector<double>& x);

struct BootstrapCI {
  double diff = 0;  // mean(b) − mean(a) on the full sample
  double lo = 0;    // percentile interval of the resampled differences
  double hi = 0;
  int resamples = 0;
};

// Paired bootstrap: draws `resamples` index sets of size n with replacement (the same indices for
// a and b, which is what makes it paired), takes mean(b[idx]) − mean(a[idx]) for each, and returns
// the (1 − confidence)/2 and (1 + confidence)/2 percentiles (linear interpolation between order
// statistics, numpy's default). Indices come from std::mt19937_64(seed) with an unbiased bounded
// draw of our own, so the interval is identical on every platform and run for a given seed.
// a and b must have the same, non-zero length.
BootstrapCI paired_bootstrap(const std::vector<double>& a, const std::vector<double>& b,
                             int resamples = 1000, uint64_t seed = 20240301, double confidence = 0.95);

}  // namespace ikv::eval
