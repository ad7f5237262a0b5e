#include "eval/loglikelihood.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>

#include "io/error.h"

namespace ikv::eval {
namespace {

// One logits row's log-softmax normaliser and argmax: logprob(t) = row[t] - max - log Σ exp(row - max).
struct LogSoftmax {
  const float* row;
  float max;
  int64_t argmax;
  double log_sum;
  double logprob(int32_t t) const { return static_cast<double>(row[t] - max) - log_sum; }
};

LogSoftmax log_softmax(const float* row, int64_t vocab) {
  float mx = row[0];
  int64_t arg = 0;
  for (int64_t j = 1; j < vocab; ++j)
    if (row[j] > mx) mx = row[j], arg = j;
  double sum = 0;
  for (int64_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(row[j] - mx));
  return {row, mx, arg, std::log(sum)};
}

// log-softmax of one logits row at `target`, and whether target is the argmax.
std::pair<double, bool> token_logprob(const float* row, int64_t vocab, int32_t target) {
  const LogSoftmax s = log_softmax(row, vocab);
  return {s.logprob(target), s.argmax == target};
}

// lm-eval's _encode_pair with the context's encoding looked up in (and added to) ctx_cache: the
// answer options of a question share their context string.
using ContextCache = std::unordered_map<std::string, std::vector<int32_t>>;

std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair_cached(const model::Tokenizer& tok,
                                                                           const std::string& context,
                                                                           const std::string& continuation,
                                                                           ContextCache* ctx_cache) {
  std::string ctx = context, cont = continuation;
  size_t end = ctx.find_last_not_of(' ');
  size_t n_spaces = end == std::string::npos ? ctx.size() : ctx.size() - end - 1;
  if (n_spaces > 0) {
    cont = ctx.substr(ctx.size() - n_spaces) + cont;
    ctx.resize(ctx.size() - n_spaces);
  }
  std::vector<int32_t> whole = tok.encode(ctx + cont);
  std::vector<int32_t> ctx_enc;
  if (!ctx.empty()) {
    if (!ctx_cache) {
      ctx_enc = tok.encode(ctx);
    } else {
      auto it = ctx_cache->find(ctx);
      if (it == ctx_cache->end()) it = ctx_cache->emplace(ctx, tok.encode(ctx)).first;
      ctx_enc = it->second;
    }
  }
  std::vector<int32_t> cont_enc(whole.begin() + std::min(whole.size(), ctx_enc.size()), whole.end());
  return {ctx_enc, cont_enc};
}

// The model input for one request: <bos> + context + continuation, truncated from the left (after
// <bos>) so that the input (all but the last token) fits max_ctx. Without <bos> (opt.bos false):
// context + continuation, an empty context standing as the end-of-text token.
struct Encoded {
  std::vector<int32_t> context;  // starts with <bos> (with opt.bos)
  std::vector<int32_t> continuation;
};

Encoded encode_request(const model::Tokenizer& tok, const LoglikRequest& r, const model::Config& c, bool bos,
                       int64_t max_ctx, ContextCache* ctx_cache = nullptr) {
  auto [ctx, cont] = encode_pair_cached(tok, r.context, r.continuation, ctx_cache);
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

// The sequences of one call as a trie: a node is one token at depth d (position P + d, after the
// prefix's P positions), shared by every sequence that starts with the same d + 1 tokens. Node 0 is
// the root (the prefix, or nothing). A rerun node stands for the last prefix position recomputed
// (an IntactKV prefix covering a whole context; its K/V stay the prefix's).
struct Node {
  int32_t token = 0;
  int64_t depth = -1;
  int64_t parent = -1;
  std::vector<int64_t> children;  // in the order they are walked (order_children)
  bool logits = false;            // a request scores the token after this one
  bool resident = false;          // in the cache from the previous call (slot = position)
  bool rerun = false;
};

// The order the trie is walked in, lm-eval's: at every branching the sibling with the most tokens
// below it first (lm-eval sorts requests by length, longest first, so a padded batch wastes little
// and a request too long fails at once; packed rows carry no padding, so here the order is only
// the same, and no result depends on it). One exception: the branch towards the call's last
// request goes last, so that its path (an MMLU subject's header, as documents come in order) is
// what the call leaves in the cache for the next one.
void order_children(std::vector<Node>& nodes, int64_t last_leaf) {
  std::vector<int64_t> tokens_below(nodes.size(), 1);
  for (int64_t v = static_cast<int64_t>(nodes.size()) - 1; v > 0; --v)  // a child comes after its parent
    if (nodes[v].parent >= 0) tokens_below[nodes[v].parent] += tokens_below[v];
  for (Node& n : nodes)
    std::stable_sort(n.children.begin(), n.children.end(),
                     [&](int64_t a, int64_t b) { return tokens_below[a] > tokens_below[b]; });
  for (int64_t v = last_leaf; v > 0 && nodes[v].parent >= 0; v = nodes[v].parent) {
    std::vector<int64_t>& kids = nodes[nodes[v].parent].children;
    std::rotate(std::find(kids.begin(), kids.end(), v), std::find(kids.begin(), kids.end(), v) + 1, kids.end());
  }
}

// One scored continuation token: the node whose logits predict it, and where its result goes.
struct Target {
  int64_t node, index;
  int32_t token;
};

}  // namespace

std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(const model::Tokenizer& tok,
                                                                    const std::string& context,
                                                                    const std::string& continuation) {
  return encode_pair_cached(tok, context, continuation, nullptr);
}

int64_t scorer_max_ctx(const model::Config& c, const ScorerOptions& opt, const intactkv::Prefix* prefix) {
  const int64_t P = prefix ? prefix->size() : 0;
  int64_t max_ctx = opt.max_ctx > 0 ? std::min(opt.max_ctx, c.max_pos) : c.max_pos;
  // The prefix occupies P positions (one of them standing in for <bos>).
  if (P > 1) max_ctx = std::max<int64_t>(2, max_ctx - (P - 1));
  return max_ctx;
}

LoglikelihoodScorer::LoglikelihoodScorer(const engine::Engine& eng, const model::Tokenizer& tok, ScorerOptions opt,
                                         const intactkv::Prefix* prefix)
    : eng_(eng), tok_(tok), opt_(opt), prefix_(prefix) {
  if (prefix && !opt.bos) fail("loglikelihood: an IntactKV prefix stands in for <bos>; it cannot be used without one");
  if (opt.rows_per_forward < 1) fail("loglikelihood: rows_per_forward ", opt.rows_per_forward, " must be >= 1");
  const int64_t P = prefix ? prefix->size() : 0;
  max_ctx_ = scorer_max_ctx(eng.config(), opt, prefix);
  // The prefix, the longest sequence path (< max_ctx tokens) and one forward's rows.
  cache_ = engine::make_kv_cache(eng.config(), P + max_ctx_ + opt.rows_per_forward, opt.kv_bits);
  if (prefix) intactkv::install_prefix(cache_, *prefix, eng, opt.quantize_prefix);
}

std::vector<LoglikResult> LoglikelihoodScorer::score(const std::vector<LoglikRequest>& requests) {
  const model::Config& c = eng_.config();
  const int64_t P = prefix_ ? prefix_->size() : 0, B = opt_.rows_per_forward;
  // A KV quantizer that looks across a sequence's tokens cannot share a batch (Engine::packs_rows):
  // each request then runs alone in one forward, which is again the same bits whatever the batch.
  if (!eng_.packs_rows(opt_.kv_bits)) return score_brute_force(eng_, tok_, requests, opt_, prefix_, &stats_);
  std::vector<LoglikResult> out(requests.size());
  if (requests.empty()) return out;

  // The trie of the requests' sequences: context tokens after those the prefix covers, then all
  // continuation tokens but the last.
  std::vector<Node> nodes(1);
  std::unordered_map<uint64_t, int64_t> child_of;  // (parent << 32 | token) -> node
  std::map<int32_t, int64_t> reruns;               // recomputed last prefix position, by token
  auto child = [&](int64_t parent, int32_t token) {
    const uint64_t key = (static_cast<uint64_t>(parent) << 32) | static_cast<uint32_t>(token);
    auto [it, added] = child_of.emplace(key, static_cast<int64_t>(nodes.size()));
    if (added) {
      Node n;
      n.token = token, n.depth = nodes[parent].depth + 1, n.parent = parent;
      nodes[parent].children.push_back(it->second);
      nodes.push_back(std::move(n));
    }
    return it->second;
  };
  std::vector<Target> targets;
  int64_t last_leaf = 0;  // the last request's last trie node
  std::vector<int64_t> first_target(requests.size() + 1, 0);
  ContextCache ctx_cache;
  for (size_t i = 0; i < requests.size(); ++i) {
    const Encoded e = encode_request(tok_, requests[i], c, opt_.bos, max_ctx_, &ctx_cache);
    const int64_t n_ctx = static_cast<int64_t>(e.context.size());
    const int64_t m = prefix_ ? intactkv::matched_prefix_length(*prefix_, e.context) : 0;
    int64_t v = 0;
    for (int64_t j = m; j < n_ctx; ++j) v = child(v, e.context[j]);
    if (m == n_ctx) {  // the prefix covers the context: the last prefix position predicts cont[0]
      auto [it, added] = reruns.emplace(e.context[m - 1], static_cast<int64_t>(nodes.size()));
      if (added) {
        Node n;
        n.token = e.context[m - 1], n.depth = -1, n.rerun = true;
        nodes.push_back(std::move(n));
      }
      targets.push_back({it->second, static_cast<int64_t>(targets.size()), e.continuation[0]});
    } else {
      targets.push_back({v, static_cast<int64_t>(targets.size()), e.continuation[0]});
    }
    for (size_t t = 0; t + 1 < e.continuation.size(); ++t) {
      v = child(v, e.continuation[t]);
      targets.push_back({v, static_cast<int64_t>(targets.size()), e.continuation[t + 1]});
    }
    first_target[i + 1] = static_cast<int64_t>(targets.size());
    last_leaf = v;
    stats_.tokens_naive += n_ctx + static_cast<int64_t>(e.continuation.size()) - 1;
    ++stats_.requests;
  }
  for (const Target& t : targets) nodes[t.node].logits = true;
  order_children(nodes, last_leaf);
  // Targets grouped by node (counting sort): node k's are by_node[node_begin[k] .. node_begin[k+1]).
  std::vector<int64_t> node_begin(nodes.size() + 1, 0);
  for (const Target& t : targets) ++node_begin[t.node + 1];
  for (size_t k = 0; k < nodes.size(); ++k) node_begin[k + 1] += node_begin[k];
  std::vector<Target> by_node(targets.size());
  {
    std::vector<int64_t> fill(node_begin.begin(), node_begin.end() - 1);
    for (const Target& t : targets) by_node[fill[t.node]++] = t;
  }

  // What the previous call left in the cache is reused as far as it is a path of this trie whose
  // tokens need no logits; those nodes go first, so the path is not dropped before it is used.
  std::vector<int32_t> resident = std::move(resident_);
  resident_.clear();
  for (int64_t v = 0, i = 0; i < static_cast<int64_t>(resident.size()); ++i) {
    auto it = child_of.find((static_cast<uint64_t>(v) << 32) | static_cast<uint32_t>(resident[i]));
    if (it == child_of.end() || nodes[it->second].logits) break;
    const int64_t ch = it->second;
    nodes[ch].resident = true;
    std::vector<int64_t>& kids = nodes[v].children;
    std::rotate(kids.begin(), std::find(kids.begin(), kids.end(), ch), std::find(kids.begin(), kids.end(), ch) + 1);
    v = ch;
  }

  // Depth-first emission into forwards of up to B rows. path_slot[d] is the cache slot of the
  // current path's token at depth d; a forward's rows take slots F.., after the path it started on.
  std::vector<double> lp(targets.size());
  std::vector<char> greedy(targets.size());
  std::vector<int64_t> path_slot, path_node;
  std::vector<int32_t> tokens;
  kernels::PackedRows rows;
  std::vector<int64_t> logit_rows, logit_node;
  std::vector<float> logits;
  int64_t F = -1, last = -1;

  auto flush = [&] {
    if (tokens.empty()) return;
    eng_.forward_packed(cache_, tokens.data(), rows, logit_rows, &logits);
    const int64_t V = c.vocab, n_logits = static_cast<int64_t>(logit_rows.size());
    // Each row's log-softmax on its own, once for every target it predicts.
#pragma omp parallel for schedule(dynamic)
    for (int64_t k = 0; k < n_logits; ++k) {
      const LogSoftmax s = log_softmax(&logits[k * V], V);
      const int64_t node = logit_node[k];
      for (int64_t t = node_begin[node]; t < node_begin[node + 1]; ++t) {
        const Target& tg = by_node[t];
        lp[tg.index] = s.logprob(tg.token);
        greedy[tg.index] = s.argmax == tg.token;
      }
    }
    // The path moves to slot = position, so the next forward's rows go after it.
    for (size_t d = 0; d < path_slot.size(); ++d)
      if (path_slot[d] != P + static_cast<int64_t>(d)) {
        cache_.copy_slot(path_slot[d], P + d);
        path_slot[d] = P + d;
      }
    stats_.tokens_evaluated += static_cast<int64_t>(tokens.size());
    stats_.logit_rows += n_logits;
    ++stats_.forwards;
    tokens.clear(), rows.clear(), logit_rows.clear(), logit_node.clear();
    F = -1, last = -1;
  };
  auto add_row = [&](int64_t v, int32_t token) {
    if (F < 0) F = P + static_cast<int64_t>(path_slot.size());
    const int64_t row = static_cast<int64_t>(tokens.size());
    if (F + row >= cache_.capacity) fail("loglikelihood: slot ", F + row, " is beyond the scorer's cache");
    tokens.push_back(token);
    if (nodes[v].logits) logit_rows.push_back(row), logit_node.push_back(v);
    return F + row;
  };
  auto emit = [&](int64_t v) {
    const Node& n = nodes[v];
    const int64_t slot = add_row(v, n.token);
    if (last >= 0 && last == n.parent) {
      rows.extend_last();
    } else {  // a new segment: it sees the prefix and the path to its parent
      std::vector<kernels::KeySpan> spans;
      if (P > 0) spans.push_back({0, P, 0});
      for (size_t d = 0; d < path_slot.size(); ++d) {
        const int64_t pos = P + static_cast<int64_t>(d);
        kernels::KeySpan* b = spans.empty() ? nullptr : &spans.back();
        if (b && b->slot + b->len == path_slot[d] && b->pos + b->len == pos)
          ++b->len;
        else
          spans.push_back({path_slot[d], 1, pos});
      }
      rows.add_segment(P + n.depth, slot, spans);
    }
    path_slot.push_back(slot), path_node.push_back(v);
    last = v;
    if (static_cast<int64_t>(tokens.size()) == B) flush();
  };

  std::vector<int64_t> stack(nodes[0].children.rbegin(), nodes[0].children.rend());
  while (!stack.empty()) {
    const int64_t v = stack.back();
    stack.pop_back();
    path_slot.resize(nodes[v].depth), path_node.resize(nodes[v].depth);
    if (nodes[v].resident) {
      path_slot.push_back(P + nodes[v].depth), path_node.push_back(v);
    } else {
      emit(v);
    }
    stack.insert(stack.end(), nodes[v].children.rbegin(), nodes[v].children.rend());
  }
  for (const auto& [token, v] : reruns) {  // position P-1 again, seeing the prefix before it
    const int64_t slot = add_row(v, token);
    rows.add_segment(P - 1, slot, P > 1 ? std::vector<kernels::KeySpan>{{0, P - 1, 0}} : std::vector<kernels::KeySpan>{});
    last = -1;
    if (static_cast<int64_t>(tokens.size()) == B) flush();
  }
  flush();
  for (int64_t v : path_node) resident_.push_back(nodes[v].token);

  for (size_t i = 0; i < requests.size(); ++i) {
    LoglikResult& r = out[i];
    r.n_tokens = first_target[i + 1] - first_target[i];
    r.greedy = true;
    for (int64_t t = first_target[i]; t < first_target[i + 1]; ++t) {
      r.logprob += lp[t];
      r.greedy = r.greedy && greedy[t];
    }
  }
  return out;
}

std::vector<LoglikResult> score_brute_force(const engine::Engine& eng, const model::Tokenizer& tok,
                                            const std::vector<LoglikRequest>& requests, const ScorerOptions& opt,
                                            const intactkv::Prefix* prefix, ScorerStats* stats) {
  const model::Config& c = eng.config();
  if (prefix && !opt.bos) fail("loglikelihood: an IntactKV prefix stands in for <bos>; it cannot be used without one");
  const int64_t max_ctx = scorer_max_ctx(c, opt, prefix);
  std::vector<LoglikResult> out;
  for (const auto& r : requests) {
    // A fresh cache per request: no sharing of anything between requests.
    Encoded e = encode_request(tok, r, c, opt.bos, max_ctx);
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
    if (stats) {
      const int64_t n_run = static_cast<int64_t>(input.size()) - m + (first < m ? 1 : 0);
      stats->tokens_evaluated += n_run, stats->tokens_naive += n_run, ++stats->requests;
      stats->logit_rows += static_cast<int64_t>(e.continuation.size());
      stats->forwards += first < m && static_cast<int64_t>(input.size()) > m ? 2 : 1;
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
