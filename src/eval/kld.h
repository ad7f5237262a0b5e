// KL divergence of the quantized model's next-token distribution from the FP model's,
// KL(P_fp ‖ P_q), on the perplexity windows (same construction and scored positions as
// perplexity.h), and how often both pick the same top-1 token.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/forward.h"
#include "intactkv/prefix.h"

namespace ikv::eval {

struct KldOptions {
  int64_t ctx = 512, windows = 8;
  int kv_bits = 16;  // for the quantized model's cache
};

struct KldResult {
  double mean_kld = 0, stderr_kld = 0, top1_agreement = 0;
  int64_t tokens = 0;
  std::vector<double> window_kld;  // mean KL per window
};

KldResult kl_divergence(const engine::Engine& fp, const engine::Engine& quant, const std::vector<int32_t>& stream,
                        const KldOptions& opt, const intactkv::Prefix* prefix = nullptr);

}  // namespace ikv::eval
