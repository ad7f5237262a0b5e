// What a task asks of a model, in lm-evaluation-harness terms: a loglikelihood request is a
// (context, continuation) pair; the scorer answers with the summed log-probability of the
// continuation tokens and whether every continuation token is the greedy (argmax) choice.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ikv::eval {

struct LoglikRequest {
  std::string context;
  std::string continuation;
};

struct LoglikResult {
  double logprob = 0;        // sum over continuation tokens of log p(token | prefix)
  bool greedy = false;       // every continuation token was the argmax
  int64_t n_tokens = 0;      // continuation length in tokens
};

// Scores a batch of requests (the implementation shares computation between requests that start
// with the same tokens, and a request's result does not depend on the others). Results are in
// request order.
using LoglikFn = std::function<std::vector<LoglikResult>(const std::vector<LoglikRequest>&)>;
// Number of tokens the model's tokenizer gives for a text (no <bos>).
using TokenCountFn = std::function<int64_t(const std::string&)>;

}  // namespace ikv::eval
