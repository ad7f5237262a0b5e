#include "eval/perplexity.h"

#include <chrono>
#include <cmath>

#include "io/progress.h"
#include "io/error.h"

namespace ikv::eval {

std::vector<int32_t> perplexity_stream(const model::Tokenizer& tok, const std::string& text, int32_t bos_id) {
  std::vector<int32_t> stream;
  if (bos_id >= 0) stream.push_back(bos_id);
  std::vector<int32_t> enc = tok.encode(text);
  stream.insert(stream.end(), enc.begin(), enc.end());
  return stream;
}

int64_t perplexity_window_count(int64_t stream_tokens, const PerplexityOptions& opt) {
  const int64_t ctx = opt.ctx;
  if (ctx < 3) fail("perplexity: ctx ", ctx, " is too small (need at least 3)");
  const int64_t available = stream_tokens / ctx;
  if (available == 0)
    fail(opt.source.empty() ? "perplexity" : opt.source, ": the text has ", stream_tokens,
         " tokens, fewer than one window of ", ctx);
  return opt.windows > 0 ? std::min(opt.windows, available) : available;
}

PerplexityResult perplexity(const engine::Engine& eng, const std::vector<int32_t>& stream,
                            const PerplexityOptions& opt, const intactkv::Prefix* prefix) {
  const model::Config& c = eng.config();
  const int64_t ctx = opt.ctx;
  const int64_t n_windows = perplexity_window_count(static_cast<int64_t>(stream.size()), opt);
  if (ctx > c.max_pos) fail("perplexity: ctx ", ctx, " exceeds the model's max_position_embeddings ", c.max_pos);
  const int64_t first = opt.first_window;
  if (first < 0 || first > n_windows) fail("perplexity: first window ", first, " is outside 0..", n_windows);
  const int64_t P = prefix ? prefix->size() : 0;

  engine::KVCache cache = engine::make_kv_cache(c, P + ctx, opt.kv_bits);
  if (prefix) intactkv::install_prefix(cache, *prefix, eng, opt.quantize_prefix);

  PerplexityResult r;
  io::Progress bar("ppl", n_windows - first);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens_run = 0;
  std::vector<float> logits;
  std::vector<double> token_nll;
  for (int64_t w = first; w < n_windows; ++w) {
    std::vector<int32_t> window(stream.begin() + w * ctx, stream.begin() + (w + 1) * ctx);
    if (c.has_bos()) window[0] = c.bos_id;
    const int64_t m = prefix ? intactkv::matched_prefix_length(*prefix, window) : 0;
    cache.reset();
    // Window index i runs at cache position P + (i - m); logits row r belongs to index m + r.
    // The index whose prediction is scored first: past <bos> and its prediction; without a BOS
    // (Qwen), every prediction inside the window.
    const int64_t first_scored = c.has_bos() ? std::max<int64_t>(1, m) : m;
    const int64_t n_run = ctx - m;
    eng.forward(cache, window.data() + m, n_run, &logits, first_scored - m);
    // Each position's NLL in parallel, then their sum in position order: the same bits with any
    // thread count.
    token_nll.assign(ctx - 1 - first_scored, 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t i = first_scored; i <= ctx - 2; ++i) {
      const float* row = &logits[(i - first_scored) * c.vocab];
      float mx = row[0];
      for (int64_t j = 1; j < c.vocab; ++j) mx = std::max(mx, row[j]);
      double sum = 0;
      for (int64_t j = 0; j < c.vocab; ++j) sum += std::exp(static_cast<double>(row[j] - mx));
      token_nll[i - first_scored] = std::log(sum) + mx - row[window[i + 1]];
    }
    double nll = 0;
    for (double x : token_nll) nll += x;
    // A NaN/Inf here (NaN weights, an overflow) would become the reported PPL; it is an error.
    if (!std::isfinite(nll))
      fail(eng.weights().source, ": perplexity window ", w, " has a non-finite NLL (", nll,
           "): NaN or Inf in the weights or activations");
    r.tokens_scored += ctx - 1 - first_scored;
    r.window_nll.push_back(nll);
    r.nll_sum += nll;
    tokens_run += n_run;
    if (opt.progress) bar.update(w + 1 - first);
  }
  bar.finish();
  r.windows = n_windows - first;
  r.ppl = r.tokens_scored > 0 ? std::exp(r.nll_sum / static_cast<double>(r.tokens_scored)) : NAN;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_second = r.seconds > 0 ? tokens_run / r.seconds : 0;
  return r;
}

PerplexityResult join_perplexity(const std::vector<PerplexityResult>& parts) {
  PerplexityResult r;
  for (const PerplexityResult& p : parts) {
    r.window_nll.insert(r.window_nll.end(), p.window_nll.begin(), p.window_nll.end());
    r.tokens_scored += p.tokens_scored;
    r.windows += p.windows;
    r.seconds += p.seconds;
  }
  for (double nll : r.window_nll) r.nll_sum += nll;
  r.ppl = r.tokens_scored > 0 ? std::exp(r.nll_sum / static_cast<double>(r.tokens_scored)) : NAN;
  return r;
}

}  // namespace ikv::eval
