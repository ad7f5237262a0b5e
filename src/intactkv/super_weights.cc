#include "intactkv/super_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "io/error.h"
#include "kernels/linear.h"

namespace ikv::intactkv {

std::vector<SuperWeight> find_super_weights(const engine::Engine& fp, const std::vector<int32_t>& ids, double ratio) {
  const model::Weights& w = fp.weights();
  const model::Config& c = w.config;
  const int64_t n = static_cast<int64_t>(ids.size()), D = c.dim, F = c.hidden;
  if (n < 2) fail("super weights: the prompt needs at least 2 tokens");
  std::vector<float> x(n * D);
  for (int64_t t = 0; t < n; ++t) {
    if (ids[t] < 0 || ids[t] >= c.vocab) fail("super weights: token id ", ids[t], " is outside the vocabulary");
    w.embed.row(ids[t], &x[t * D]);
  }
  std::vector<SuperWeight> found;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    engine::LinearInputs in;
    fp.layer_forward(l, x.data(), n, &in);
    // y = a · W_downᵀ in double, from the dequantized weight (the FP model's own).
    const std::vector<float> W = kernels::linear_dense_weight(w.layers[l].down);
    std::vector<double> y(n * D, 0.0), token_max(n, 0.0);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < D; ++r) {
        double s = 0;
        for (int64_t k = 0; k < F; ++k) s += double(W[r * F + k]) * in.down_in[t * F + k];
        y[t * D + r] = s;
        token_max[t] = std::max(token_max[t], std::fabs(s));
      }
    const int64_t top = std::max_element(y.begin(), y.end(), [](double a, double b) { return std::fabs(a) < std::fabs(b); }) -
                        y.begin();
    std::vector<double> sorted = token_max;
    std::nth_element(sorted.begin(), sorted.begin() + n / 2, sorted.end());
    const double median = sorted[n / 2];
    const double r_top = median > 0 ? std::fabs(y[top]) / median : 0;
    if (!(r_top >= ratio)) continue;
    SuperWeight s;
    s.layer = l, s.position = top / D, s.row = top % D, s.ratio = r_top;
    s.output = static_cast<float>(y[top]);
    double best = 0;
    for (int64_t k = 0; k < F; ++k) {
      const double p = double(W[s.row * F + k]) * in.down_in[s.position * F + k];
      if (std::fabs(p) > std::fabs(best)) best = p, s.col = k;
    }
    s.weight = W[s.row * F + s.col];
    s.input = in.down_in[s.position * F + s.col];
    s.share = best / y[top];
    found.push_back(s);
  }
  return found;
}

}  // namespace ikv::intactkv
