#include "eval/perplexity.h"

#include <chrono>
#include <cmath>

#include "eval/progress.h"
#include "io/error.h"

namespace ikv::eval {

std::vector<int32_t> perplexity_stream(const model::Tokenizer& tok, const std::string& text, int32_t bos_id) {
  std::vector<int32_t> stream{bos_id};
  std::vector<int32_t> enc = tok.encode(text);
  stream.insert(stream.end(), enc.begin(), enc.end());
  return stream;
}

PerplexityResult perplexity(const engine::Engine& eng, const std::vector<int32_t>& stream,
                            const PerplexityOptions& opt, const intactkv::Prefix* prefix) {
  const model::Config& c = eng.config();
  const int64_t ctx = opt.ctx;
  if (ctx < 3) fail("perplexity: ctx ", ctx, " is too small (need at least 3)");
  if (ctx > c.max_pos) fail("perplexity: ctx ", ctx, " exceeds the model's max_position_embeddings ", c.max_pos);
  const int64_t available = static_cast<int64_t>(stream.size()) / ctx;
  if (available == 0) fail("perplexity: the text has ", stream.size(), " tokens, fewer than one window of ", ctx);
  const int64_t n_windows = opt.windows > 0 ? std::min(opt.windows, available) : available;
  const int64_t P = prefix ? prefix->size() : 0;

  engine::KVCache cache = engine::make_kv_cache(c, P + ctx, opt.kv_bits);
  if (prefix) intactkv::install_prefix(cache, *prefix, opt.quantize_prefix);

  PerplexityResult r;
  Progress bar("ppl", n_windows);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens_run = 0;
  std::vector<float> logits;
  for (int64_t w = 0; w < n_windows; ++w) {
    std::vector<int32_t> window(stream.begin() + w * ctx, stream.begin() + (w + 1) * ctx);
    window[0] = c.bos_id;
    const int64_t m = prefix ? intactkv::matched_prefix_length(*prefix, window) : 0;
    cache.reset();
    // Window index i runs at cache position P + (i - m); logits row r belongs to index m + r.
    const int64_t first_scored = std::max<int64_t>(1, m);  // index whose prediction is scored first
    const int64_t n_run = ctx - m;
    eng.forward(cache, window.data() + m, n_run, &logits, first_scored - m);
    double nll = 0;
    // Positions are independent; the sum's order changes with the thread count only in the last bits.
#pragma omp parallel for reduction(+ : nll) schedule(static)
    for (int64_t i = first_scored; i <= ctx - 2; ++i) {
      const float* row = &logits[(i - first_scored) * c.vocab];
      float mx = row[0];
      for (int64_t j = 1; j < c.vocab; ++j) mx = std::max(mx, row[j]);
      double sum = 0;
      for (int64_t j = 0; j < c.vocab; ++j) sum += std::exp(static_cast<double>(row[j] - mx));
      nll += std::log(sum) + mx - row[window[i + 1]];
    }
    r.tokens_scored += ctx - 1 - first_scored;
    r.window_nll.push_back(nll);
    r.nll_sum += nll;
    tokens_run += n_run;
    if (opt.progress) bar.update(w + 1);
  }
  bar.finish();
  r.windows = n_windows;
  r.ppl = std::exp(r.nll_sum / static_cast<double>(r.tokens_scored));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_second = r.seconds > 0 ? tokens_run / r.seconds : 0;
  return r;
}

}  // namespace ikv::eval
