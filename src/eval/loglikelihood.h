// The loglikelihood scorer behind every multiple-choice task (lm-evaluation-harness semantics).
// A request (context, continuation) is encoded as lm-eval's _encode_pair does: trailing spaces of
// the context move to the continuation, context_enc = encode(context), continuation_enc =
// encode(context + continuation)[len(context_enc):]. The model input is <bos> + context_enc +
// continuation_enc (the <bos> that LLaMA models are trained with, and that an IntactKV prefix
// stands in for). Over-long inputs lose context tokens from the left (after <bos>), as lm-eval
// truncates.
//
// How the scorer runs them: each request's model input (after any IntactKV prefix) is a token
// sequence; a call's sequences go into a trie, so a common leading part — the context of a
// task's answer options, MMLU's five-shot header of a subject — runs once, and the trie's tokens
// are packed depth-first into forwards of up to rows_per_forward tokens (Engine::forward_packed:
// several sequences per batch, each row at its own position and KV slot, attending only to its own
// sequence). The path of the last sequence stays in the KV cache for the next call (an MMLU
// subject's header runs once however many calls its questions take). Only rows whose next-token
// distribution is scored go through the head. Siblings are walked longest first, as lm-eval orders
// requests (order_children in loglikelihood.cc says why and what the exception is).
// Every row's arithmetic is independent of the rest of its batch (see forward_packed), so a
// request's loglikelihood is the same bits whatever else is in the call, the call sizes, the
// rows per forward, the thread count or how a task is split over processes.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/forward.h"
#include "eval/requests.h"
#include "intactkv/prefix.h"
#include "model/tokenizer.h"

namespace ikv::eval {

struct ScorerOptions {
  int64_t max_ctx = 0;  // 0 = the model's max_position_embeddings
  int kv_bits = 16;
  bool quantize_prefix = false;
  // false: requests start without <bos>, as lm-eval 0.4.0-0.4.9.1 scored LLaMA; an empty context
  // is then the end-of-text token (lm-eval's convention). An IntactKV prefix needs <bos>.
  bool bos = true;
  // Tokens packed into one forward (its linears run in blocks of Engine::kPackedRowBlock rows).
  int64_t rows_per_forward = 512;
};

struct ScorerStats {
  int64_t tokens_evaluated = 0;  // tokens run through the model (no padding)
  int64_t tokens_naive = 0;      // tokens a scorer without context reuse would run
  int64_t requests = 0;
  int64_t forwards = 0;          // packed forwards
  int64_t logit_rows = 0;        // rows that went through the head
};

class LoglikelihoodScorer {
 public:
  LoglikelihoodScorer(const engine::Engine& eng, const model::Tokenizer& tok, ScorerOptions opt,
                      const intactkv::Prefix* prefix = nullptr);
  std::vector<LoglikResult> score(const std::vector<LoglikRequest>& requests);
  int64_t count_tokens(const std::string& text) const { return static_cast<int64_t>(tok_.encode(text).size()); }
  const ScorerStats& stats() const { return stats_; }
  int64_t max_ctx() const { return max_ctx_; }

 private:
  const engine::Engine& eng_;
  const model::Tokenizer& tok_;
  ScorerOptions opt_;
  const intactkv::Prefix* prefix_;
  int64_t max_ctx_;
  // Slots [0, P) hold the prefix (if any), [P, P + resident_.size()) the sequence tokens the last
  // call left (slot = position), then room for one forward's rows.
  engine::KVCache cache_;
  std::vector<int32_t> resident_;
  ScorerStats stats_;
};

// The context length a scorer with these options gives requests (the model's, capped by
// opt.max_ctx, less an IntactKV prefix's extra positions).
int64_t scorer_max_ctx(const model::Config& c, const ScorerOptions& opt, const intactkv::Prefix* prefix);

// The same answers by brute force: every request scored on its own with a fresh cache, in one
// forward (the reference twin that tests compare the shared-context scorer against; also what the
// scorer runs when the engine cannot pack rows). stats, when given, counts what was run.
std::vector<LoglikResult> score_brute_force(const engine::Engine& eng, const model::Tokenizer& tok,
                                            const std::vector<LoglikRequest>& requests, const ScorerOptions& opt,
                                            const intactkv::Prefix* prefix = nullptr, ScorerStats* stats = nullptr);

// lm-eval's _encode_pair: (context tokens, continuation tokens).
std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(const model::Tokenizer& tok,
                                                                    const std::string& context,
                                                                    const std::string& continuation);

}  // namespace ikv::eval
