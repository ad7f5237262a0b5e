// Perplexity as the IntactKV paper's code computes it: the stream is <bos> + encode(whole text);
// consecutive windows of ctx tokens (the incomplete tail dropped), token 0 of each window set to
// <bos>, targets 2..ctx-1 scored (the prediction right after <bos> is skipped). A model without a
// BOS (Qwen; bos_id -1) streams the text alone, windows are not overwritten, targets 1..ctx-1;
// PPL = exp(total NLL / scored tokens). With an IntactKV prefix the window's leading tokens that
// equal the prefix are not recomputed: the prefix KV (from the FP model) stands in for them.
//
// Windows are independent, so a run can be cut into window ranges (first_window .. windows) that
// run anywhere and are joined afterwards (join_perplexity). Every sum is taken in a fixed order —
// positions within a window, then windows — so the joined result is bit-identical to one run over
// all windows, and the NLL of a window does not depend on the OpenMP thread count of the
// log-softmax (the forward pass's GEMMs may still round differently with another thread count).
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
  int64_t first_window = 0;  // score windows [first_window, windows) only: a part of a split run
  int kv_bits = 16;
  bool quantize_prefix = false;
  bool progress = true;
  std::string source;  // the text's file, named in errors ("" = unnamed)
  // Layer-major order: blocks of windows, each decoder layer over all of a block's windows and
  // then released (model::release_layer_pages), so each weight is read once per block and peak
  // memory is a layer plus the block's residual streams (layer_major_bytes of fp32 at most, one
  // window at least). Bit-identical results.
  bool layer_major = false;
  int64_t layer_major_bytes = int64_t{2} << 30;
};

struct PerplexityResult {
  double ppl = 0, nll_sum = 0;
  int64_t tokens_scored = 0, windows = 0;  // windows: how many were scored (this part's)
  double seconds = 0, tokens_per_second = 0;  // tokens run through the model per second
  std::vector<double> window_nll;              // per-window NLL sums (for paired comparisons)
};

// bos_id -1: no <bos> (the model has none).
std::vector<int32_t> perplexity_stream(const model::Tokenizer& tok, const std::string& text, int32_t bos_id);

PerplexityResult perplexity(const engine::Engine& eng, const std::vector<int32_t>& stream,
                            const PerplexityOptions& opt, const intactkv::Prefix* prefix = nullptr);

// How many windows perplexity() scores for a stream of `stream_tokens` (opt.windows capped by the
// complete windows there are); first_window is not subtracted. Throws as perplexity() does.
int64_t perplexity_window_count(int64_t stream_tokens, const PerplexityOptions& opt);

// Results of consecutive window ranges, in window order, as one result: window NLLs concatenated,
// nll_sum re-added window by window from zero (as perplexity() adds them), tokens and windows
// summed, seconds summed.
PerplexityResult join_perplexity(const std::vector<PerplexityResult>& parts);

}  // namespace ikv::eval
