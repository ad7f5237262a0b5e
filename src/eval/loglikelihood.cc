#include "eval/loglikelihood.h"

#include <cmath>
#include <map>

#include "io/error.h"

namespace ikv::eval {
namespace {

// log-softmax of one logits row at `target`, and whether target is the argmax.
std::pair<double, bool> token_logprob(const float* row, int64_t vocab, int32_t target) {
  float mx = row[0];
  int64_t arg = 0;
  for (int64_t j = 1; j < vocab; ++j)
    if (row[j] > mx) mx = row[j], arg = j;
  double sum = 0;
  for (int64_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(row[j] - mx));
  return {static_cast<double>(row[target] - mx) - std::log(sum), arg == target};
}

// The model input for one request: <bos> + context + continuation, truncated from the left (after
// <bos>) so that the input (all but the last token) fits max_ctx. Without <bos> (opt.bos false):
// context + continuation, an empty context standing as the end-of-text token.
struct Encoded {
  std::vector<int32_t> context;  // starts with <bos> (with opt.bos)
  std::vector<int32_t> continuation;
};

Encoded encode_request(const model::Tokenizer& tok, const LoglikRequest& r, const model::Config& c, bool bos,
                       int64_t max_ctx) {
  auto [ctx, cont] = encode_pair(tok, r.context, r.continuation);
  if (cont.empty()) fail("loglikelihood: continuation '", r.continuation, "' encodes to no tokens");
  if (static_cast<int64_t>(cont.size()) >= max_ctx)
    fail("loglikelihood: continuation of ", cont.size(), " tokens does not fit the context of ", max_ctx);
  // Input = [bos] + ctx + cont minus the last token: |ctx| + |cont| positions with <bos>, one
  // fewer without.
  const int64_t excess = static_cast<int64_t>(ctx.size() + cont.size()) - (bos ? 0 : 1) - max_ctx;
  if (excess > 0) ctx.erase(ctx.begin(), ctx.begin() + std::min<int64_t>(excess, ctx.size()));
  Encoded e;
  if (bos && c.has_bos()) e.context.push_back(c.bos_id);
  e.context.insert(e.context.end(), ctx.begin(), ctx.end());
  if (e.context.empty()) e.context.push_back(c.eos_id);
  e.continuation = std::move(cont);
  return e;
}

// When an IntactKV prefix covers the whole context, the next-token distribution after it needs
// the last prefix token's hidden state, which the prefix does not store. Recompute that token at
// its own position, take its logits, and put the prefix's K/V for that position back.
void logits_after_covered_context(const engine::Engine& eng, engine::KVCache& cache, int32_t last_token,
                                  std::vector<float>* logits) {
  const int64_t pos = cache.len - 1, Hd = cache.head_dim;
  std::vector<float> saved;
  for (int64_t l = 0; l < cache.n_layers; ++l)
    for (int64_t h = 0; h < cache.n_kv_heads; ++h) {
      saved.insert(saved.end(), cache.k_at(l, h, pos), cache.k_at(l, h, pos) + Hd);
      saved.insert(saved.end(), cache.v_at(l, h, pos), cache.v_at(l, h, pos) + Hd);
    }
  cache.len = pos;
  eng.forward(cache, &last_token, 1, logits, 0);
  size_t i = 0;
  for (int64_t l = 0; l < cache.n_layers; ++l)
    for (int64_t h = 0; h < cache.n_kv_heads; ++h, i += 2 * Hd) {
      std::copy(&saved[i], &saved[i + Hd], cache.k_at(l, h, pos));
      std::copy(&saved[i + Hd], &saved[i + 2 * Hd], cache.v_at(l, h, pos));
    }
}

}  // namespace

std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(const model::Tokenizer& tok,
                                                                    const std::string& context,
                                                                    const std::string& continuation) {
  std::string ctx = context, cont = continuation;
  size_t end = ctx.find_last_not_of(' ');
  size_t n_spaces = end == std::string::npos ? ctx.size() : ctx.size() - end - 1;
  if (n_spaces > 0) {
    cont = ctx.substr(ctx.size() - n_spaces) + cont;
    ctx.resize(ctx.size() - n_spaces);
  }
  std::vector<int32_t> whole = tok.encode(ctx + cont);
  std::vector<int32_t> ctx_enc = ctx.empty() ? std::vector<int32_t>{} : tok.encode(ctx);
  std::vector<int32_t> cont_enc(whole.begin() + std::min(whole.size(), ctx_enc.size()), whole.end());
  return {ctx_enc, cont_enc};
}

LoglikelihoodScorer::LoglikelihoodScorer(const engine::Engine& eng, const model::Tokenizer& tok, ScorerOptions opt,
                                         const intactkv::Prefix* prefix)
    : eng_(eng), tok_(tok), opt_(opt), prefix_(prefix) {
  if (prefix && !opt.bos) fail("loglikelihood: an IntactKV prefix stands in for <bos>; it cannot be used without one");
  const int64_t P = prefix ? prefix->size() : 0;
  max_ctx_ = opt.max_ctx > 0 ? std::min(opt.max_ctx, eng.config().max_pos) : eng.config().max_pos;
  // The prefix occupies P positions (one of them standing in for <bos>).
  if (P > 1) max_ctx_ = std::max<int64_t>(2, max_ctx_ - (P - 1));
  cache_ = engine::make_kv_cache(eng.config(), max_ctx_ + P, opt.kv_bits);
  if (prefix) intactkv::install_prefix(cache_, *prefix, eng, opt.quantize_prefix);
}

std::vector<LoglikResult> LoglikelihoodScorer::score(const std::vector<LoglikRequest>& requests) {
  const model::Config& c = eng_.config();
  std::vector<LoglikResult> out(requests.size());
  std::vector<Encoded> enc;
  enc.reserve(requests.size());
  for (const auto& r : requests) enc.push_back(encode_request(tok_, r, c, opt_.bos, max_ctx_));
  // Group requests by context tokens; each context runs once, each continuation after it.
  std::map<std::vector<int32_t>, std::vector<size_t>> groups;
  for (size_t i = 0; i < enc.size(); ++i) groups[enc[i].context].push_back(i);

  std::vector<float> ctx_logits, cont_logits;
  for (const auto& [context, members] : groups) {
    cache_.reset();
    const int64_t m = prefix_ ? intactkv::matched_prefix_length(*prefix_, context) : 0;
    const int64_t n_ctx = static_cast<int64_t>(context.size()) - m;
    if (n_ctx > 0) {
      eng_.forward(cache_, context.data() + m, n_ctx, &ctx_logits, n_ctx - 1);
    } else {
      logits_after_covered_context(eng_, cache_, context[m - 1], &ctx_logits);
    }
    const int64_t ctx_end = cache_.len;
    stats_.tokens_evaluated += std::max<int64_t>(n_ctx, 1);
    for (size_t i : members) {
      const std::vector<int32_t>& cont = enc[i].continuation;
      LoglikResult r;
      r.n_tokens = static_cast<int64_t>(cont.size());
      auto [lp0, g0] = token_logprob(ctx_logits.data(), c.vocab, cont[0]);
      r.logprob = lp0;
      r.greedy = g0;
      if (cont.size() > 1) {
        cache_.len = ctx_end;  // rewind: this continuation overwrites the previous one's K/V
        const int64_t n = static_cast<int64_t>(cont.size()) - 1;
        eng_.forward(cache_, cont.data(), n, &cont_logits, 0);
        stats_.tokens_evaluated += n;
        for (int64_t t = 0; t < n; ++t) {
          auto [lp, g] = token_logprob(&cont_logits[t * c.vocab], c.vocab, cont[t + 1]);
          r.logprob += lp;
          r.greedy = r.greedy && g;
        }
      }
      out[i] = r;
      stats_.tokens_naive += static_cast<int64_t>(context.size() + cont.size()) - 1;
      ++stats_.requests;
    }
  }
  return out;
}

std::vector<LoglikResult> score_brute_force(const engine::Engine& eng, const model::Tokenizer& tok,
                                            const std::vector<LoglikRequest>& requests, const ScorerOptions& opt,
                                            const intactkv::Prefix* prefix) {
  const model::Config& c = eng.config();
  std::vector<LoglikResult> out;
  for (const auto& r : requests) {
    // A fresh scorer per request: no sharing of anything between requests.
    LoglikelihoodScorer one(eng, tok, opt, prefix);
    Encoded e = encode_request(tok, r, c, opt.bos, one.max_ctx());
    std::vector<int32_t> input = e.context;
    input.insert(input.end(), e.continuation.begin(), e.continuation.end() - 1);
    engine::KVCache cache = engine::make_kv_cache(c, input.size() + (prefix ? prefix->size() : 0), opt.kv_bits);
    int64_t m = 0;
    if (prefix) {
      intactkv::install_prefix(cache, *prefix, eng, opt.quantize_prefix);
      m = intactkv::matched_prefix_length(*prefix, e.context);  // as the scorer: context tokens only
    }
    // Logits predicting continuation[0 ..]: from the last context token on.
    std::vector<float> logits, rest;
    const int64_t first = static_cast<int64_t>(e.context.size()) - 1;
    if (first >= m) {
      eng.forward(cache, input.data() + m, input.size() - m, &logits, first - m);
    } else {
      logits_after_covered_context(eng, cache, input[first], &logits);
      if (static_cast<int64_t>(input.size()) > m) {
        eng.forward(cache, input.data() + m, input.size() - m, &rest, 0);
        logits.insert(logits.end(), rest.begin(), rest.end());
      }
    }
    LoglikResult res;
    res.n_tokens = static_cast<int64_t>(e.continuation.size());
    res.greedy = true;
    for (size_t t = 0; t < e.continuation.size(); ++t) {
      auto [lp, g] = token_logprob(&logits[t * c.vocab], c.vocab, e.continuation[t]);
      res.logprob += lp;
      res.greedy = res.greedy && g;
    }
    out.push_back(res);
  }
  return out;
}

}  // namespace ikv::eval
