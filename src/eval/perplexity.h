// Perplexity as the IntactKV paper's code computes it: the stream is <bos> + encode(whole text);
// consecutive windows of ctx tokens (the incomplete tail dropped), token 0 of each window set to
// <bos>, targets 2..ctx-1 scored (the prediction right after <bos> is skipped),
// PPL = exp(total NLL / scored tokens). With an IntactKV prefix the window's leading tokens that
// equal the prefix are not recomputed: the prefix KV (from the FP model) stands in for them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/forward.h"
#include "intactkv/prefix.h"
#include "model/tokenizer.h"

namespace ikv::eval {

struct PerplexityOptions {
  int64_t ctx = 512;
  int64_t windows = 0;  // 0 = all complete windows
  int kv_bits = 16;
  bool quantize_prefix = false;
  bool progress = true;
};

struct PerplexityResult {
  double ppl = 0, nll_sum = 0;
  int64_t tokens_scored = 0, windows = 0;
  double seconds = 0, tokens_per_second = 0;  // tokens run through the model per second
  std::vector<double> window_nll;              // per-window NLL sums (for paired comparisons)
};

std::vector<int32_t> perplexity_stream(const model::Tokenizer& tok, const std::string& text, int32_t bos_id);

PerplexityResult perplexity(const engine::Engine& eng, const std::vector<int32_t>& stream,
                            const PerplexityOptions& opt, const intactkv::Prefix* prefix = nullptr);

}  // namespace ikv::eval
