// AWQ's weight-clipping search (llm-awq auto_clip.py): per row and group, shrink the clamp range
// [-max|w|, max|w|] while the group's output error on a sample of tokens goes down.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "io/error.h"
#include "kernels/gemm.h"
#include "quant/awq_search.h"
#include "quant/rtn.h"

namespace ikv::quant {

std::vector<float> search_clip(const float* W, int64_t rows, int64_t cols, const float* X, int64_t n,
                               const kernels::QuantSpec& spec, int grid, double max_shrink) {
  kernels::validate_spec(spec, cols, "weight");
  const int steps = static_cast<int>(max_shrink * grid);
  if (grid < 1 || steps < 1 || max_shrink >= 1) fail("awq: clip grid ", grid, " / max shrink ", max_shrink, " give no step");
  if (n < 1) fail("awq: the clipping search needs tokens");
  const int64_t G = spec.group == -1 ? cols : spec.group, groups = cols / G;
  std::vector<float> best(rows * groups), amax(rows);
  std::vector<float> xg(n * G), diff(rows * steps * G), y(n * rows * steps);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t t = 0; t < n; ++t) std::copy_n(X + t * cols + g * G, G, &xg[t * G]);
    // Row r, step i: the quantization error Q(clamp(w)) − w of the group, so that y = x · diffᵀ is
    // the change of that row's partial output (llm-awq: cur_out − org_out).
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* w = W + r * cols + g * G;
      float a = 0;
      for (int64_t j = 0; j < G; ++j) a = std::max(a, std::fabs(w[j]));
      amax[r] = a;
      std::vector<float> cw(G);
      for (int i = 0; i < steps; ++i) {
        const float mv = a * (1.0f - static_cast<float>(i) / static_cast<float>(grid));
        for (int64_t j = 0; j < G; ++j) cw[j] = std::clamp(w[j], -mv, mv);
        const GroupParams p = rtn_group_params(cw.data(), G, spec.bits, spec.sym);
        float* d = &diff[(r * steps + i) * G];
        for (int64_t j = 0; j < G; ++j)
          d[j] = static_cast<float>(rtn_code(cw[j], p, spec.bits, spec.sym) - p.zero) * p.scale - w[j];
      }
    }
    kernels::gemm_f32(xg.data(), n, G, diff.data(), rows * steps, y.data());
    // err[k] = mean over tokens of y[t, k]², k = r · steps + i, each thread on a column range
    // walking the rows of y in order.
    const int64_t K = rows * steps;
    std::vector<double> err(K, 0.0);
#pragma omp parallel
    {
      const int nt = omp_get_num_threads(), id = omp_get_thread_num();
      const int64_t k0 = K * id / nt, k1 = K * (id + 1) / nt;
      for (int64_t t = 0; t < n; ++t)
        for (int64_t k = k0; k < k1; ++k) err[k] += static_cast<double>(y[t * K + k]) * y[t * K + k];
    }
    for (int64_t r = 0; r < rows; ++r) {
      double min_err = std::numeric_limits<double>::infinity();
      float chosen = amax[r];
      for (int i = 0; i < steps; ++i) {
        const double e = err[r * steps + i] / static_cast<double>(n);
        if (e < min_err) {  // the first minimum, as llm-awq's strict err < min_errs
          min_err = e;
          chosen = amax[r] * (1.0f - static_cast<float>(i) / static_cast<float>(grid));
        }
      }
      best[r * groups + g] = chosen;
    }
  }
  return best;
}

void apply_clip(float* W, int64_t rows, int64_t cols, const kernels::QuantSpec& spec, const std::vector<float>& max_val) {
  const int64_t G = spec.group == -1 ? cols : spec.group, groups = cols / G;
  if (static_cast<int64_t>(max_val.size()) != rows * groups) fail("awq: clip values do not match the weight's groups");
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const float mv = max_val[r * groups + j / G];
      W[r * cols + j] = std::clamp(W[r * cols + j], -mv, mv);
    }
}

}  // namespace ikv::quant
