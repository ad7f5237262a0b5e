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

namespace {

// A window as the model sees it: its tokens (token 0 set to <bos>), how many leading ones the
// IntactKV prefix stands in for (m), and the index whose prediction is scored first: past <bos>
// and its prediction; without a BOS (Qwen), every prediction inside the window. Window index i
// runs at cache position P + (i - m); logits row r belongs to index first_scored + r.
struct Window {
  std::vector<int32_t> tokens;
  int64_t m = 0, first_scored = 0;
  int64_t n_run() const { return static_cast<int64_t>(tokens.size()) - m; }
};

Window make_window(const model::Config& c, const std::vector<int32_t>& stream, int64_t w, int64_t ctx,
                   const intactkv::Prefix* prefix) {
  Window win;
  win.tokens.assign(stream.begin() + w * ctx, stream.begin() + (w + 1) * ctx);
  if (c.has_bos()) win.tokens[0] = c.bos_id;
  win.m = prefix ? intactkv::matched_prefix_length(*prefix, win.tokens) : 0;
  win.first_scored = c.has_bos() ? std::max<int64_t>(1, win.m) : win.m;
  return win;
}

// The window's NLL from its logits: each position's NLL in parallel, then their sum in position
// order, so the same bits with any thread count.
double window_nll(const engine::Engine& eng, const Window& win, const std::vector<float>& logits, int64_t w) {
  const int64_t vocab = eng.config().vocab, ctx = static_cast<int64_t>(win.tokens.size());
  std::vector<double> token_nll(ctx - 1 - win.first_scored, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t i = win.first_scored; i <= ctx - 2; ++i) {
    const float* row = &logits[(i - win.first_scored) * vocab];
    float mx = row[0];
    for (int64_t j = 1; j < vocab; ++j) mx = std::max(mx, row[j]);
    double sum = 0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(row[j] - mx));
    token_nll[i - win.first_scored] = std::log(sum) + mx - row[win.tokens[i + 1]];
  }
  double nll = 0;
  for (double x : token_nll) nll += x;
  // A NaN/Inf here (NaN weights, an overflow) would become the reported PPL; it is an error.
  if (!std::isfinite(nll))
    fail(eng.weights().source, ": perplexity window ", w, " has a non-finite NLL (", nll,
         "): NaN or Inf in the weights or activations");
  return nll;
}

}  // namespace

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
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens_run = 0;
  std::vector<float> logits;
  auto score = [&](const Window& win, int64_t w) {
    const double nll = window_nll(eng, win, logits, w);
    r.tokens_scored += ctx - 1 - win.first_scored;
    r.window_nll.push_back(nll);
    r.nll_sum += nll;
    tokens_run += win.n_run();
  };
  if (!opt.layer_major) {
    io::Progress bar("ppl", n_windows - first);
    for (int64_t w = first; w < n_windows; ++w) {
      const Window win = make_window(c, stream, w, ctx, prefix);
      cache.reset();
      eng.forward(cache, win.tokens.data() + win.m, win.n_run(), &logits, win.first_scored - win.m);
      score(win, w);
      if (opt.progress) bar.update(w + 1 - first, tokens_run);
    }
    bar.finish();
  } else {
    // Layer-major: a block of windows at a time, each decoder layer run over every window of the
    // block before the next layer is read, and its mapped pages released after; the windows'
    // residual streams are what stays in memory. The same forward steps as above, in another order.
    const int64_t block = std::max<int64_t>(1, opt.layer_major_bytes / (ctx * c.dim * int64_t{sizeof(float)}));
    const int64_t n_blocks = (n_windows - first + block - 1) / block;
    io::Progress bar("ppl layer-major", n_blocks * c.n_layers);
    for (int64_t b0 = first; b0 < n_windows; b0 += block) {
      const int64_t b1 = std::min(n_windows, b0 + block);
      std::vector<Window> wins;
      std::vector<std::vector<float>> xs;
      std::vector<std::vector<uint8_t>> sinks;  // per window, the tokens some layer kept unquantized
      for (int64_t w = b0; w < b1; ++w) {
        wins.push_back(make_window(c, stream, w, ctx, prefix));
        xs.emplace_back(wins.back().n_run() * c.dim);
        sinks.emplace_back(wins.back().n_run(), 0);
        eng.embed(wins.back().tokens.data() + wins.back().m, wins.back().n_run(), xs.back().data());
      }
      for (int64_t l = 0; l < c.n_layers; ++l) {
        for (size_t i = 0; i < wins.size(); ++i) {
          cache.reset();
          eng.forward_layer(l, cache, xs[i].data(), wins[i].n_run(), sinks[i].data());
        }
        model::release_layer_pages(eng.weights(), l);
        if (opt.progress) bar.update(((b0 - first) / block) * c.n_layers + l + 1, tokens_run);
      }
      for (size_t i = 0; i < wins.size(); ++i) {
        const Window& win = wins[i];
        eng.finish_sequence(cache, sinks[i].data(), win.n_run());
        eng.head(&xs[i][(win.first_scored - win.m) * c.dim], win.n_run() - (win.first_scored - win.m), &logits);
        score(win, b0 + static_cast<int64_t>(i));
      }
    }
    bar.finish();
  }
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
