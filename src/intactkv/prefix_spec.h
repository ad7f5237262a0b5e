// What a user writes to choose an IntactKV prefix, and the tokens it means:
//   bos            IntactKV_[B]: just <bos>
//   vicuna         IntactKV_[P]: <bos> + the Vicuna v1.1 system prompt
//   prompt:TEXT    <bos> + TEXT
// optionally truncated to its first `size` tokens (size 0 = all).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace ikv::intactkv {

extern const char* const kVicunaSystemPrompt;

bool is_prefix_spec(const std::string& spec);  // bos | vicuna | prompt:...
std::vector<int32_t> prefix_tokens(const std::string& spec, const model::Tokenizer& tok, int32_t bos_id,
                                   int64_t size = 0);

}  // namespace ikv::intactkv
