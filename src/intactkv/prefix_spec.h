// What a user writes to choose an IntactKV prefix, and the tokens it means:
//   bos            IntactKV_[B]: just <bos>
//   vicuna         IntactKV_[P]: <bos> + the Vicuna v1.1 system prompt
//   system         IntactKV_[P] in the model's own chat format (system_turn below), with a
//   system:TEXT    default system message or TEXT
//   prompt:TEXT    <bos> + TEXT
// optionally truncated to its first `size` tokens (size 0 = all). A model without a BOS (Qwen,
// bos_id -1) has no IntactKV_[B]: `bos` is an error that points to `system`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace ikv::intactkv {

extern const char* const kVicunaSystemPrompt;

// The chat formats whose system turn a prefix can be, told apart by the tokenizer's added tokens.
enum class ChatFormat { Vicuna, Llama3, ChatML, Mistral };
ChatFormat chat_format(const model::Tokenizer& tok);

// The text a chat template renders for a system message, up to where the user's turn begins, as
// the families' chat templates (tokenizer_config.json) render it:
//   Vicuna   SYSTEM                     (after <bos>; the template's " USER: " follows)
//   Llama3   <|start_header_id|>system<|end_header_id|>\n\nSYSTEM<|eot_id|>   (after <|begin_of_text|>)
//   ChatML   <|im_start|>system\nSYSTEM<|im_end|>\n                          (Qwen; no BOS)
//   Mistral  [INST] SYSTEM\n\n     (after <s>; no system role: the template opens the user's turn
//                                  with the system message, and the user's text follows)
std::string system_turn(ChatFormat format, const std::string& system);
// The default system message of a format: Vicuna's, else "You are a helpful assistant.".
std::string default_system_message(ChatFormat format);

bool is_prefix_spec(const std::string& spec);  // bos | vicuna | system[:TEXT] | prompt:TEXT
// bos_id -1: the model has no BOS.
std::vector<int32_t> prefix_tokens(const std::string& spec, const model::Tokenizer& tok, int32_t bos_id,
                                   int64_t size = 0);

}  // namespace ikv::intactkv
