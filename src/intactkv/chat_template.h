// FastChat's vicuna_v1.1 conversation template, for calibrating IntactKV on ShareGPT data:
//   SYSTEM " USER: " m1 " ASSISTANT: " r1 "</s>USER: " m2 " ASSISTANT: " r2 "</s>" …
// (system + sep " ", then role + ": " + message + sep, with sep " " after a user turn and sep2
// "</s>" after an assistant turn). The loss covers the assistant replies and their "</s>" only,
// as FastChat's training and IntactKV's reference calibration mask everything else.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace ikv::intactkv {

struct ChatTurn {
  std::string from;  // ShareGPT roles: "human" (USER) or "gpt" (ASSISTANT)
  std::string value;
  bool operator==(const ChatTurn&) const = default;
};
using Conversation = std::vector<ChatTurn>;

// The turns the template uses, as the reference preprocesses them: skip to the first human turn,
// then keep strictly alternating human/gpt turns, stopping at the first turn that breaks the
// alternation (another role, a repeated role) or is empty. A last human turn without a reply is
// dropped: attention is causal, so it could not change the loss.
Conversation vicuna_turns(const Conversation& raw);

// The prompt string of the turns (vicuna_turns already applied), system message first.
std::string render_vicuna(const Conversation& turns, const std::string& system);

// The tokens of render_vicuna's string and which are the assistant's (1) — the loss tokens.
// Tokenized piece by piece like the reference: [<bos>] encode(system) encode("USER: m ASSISTANT:")
// encode(r) [</s>] encode("USER: …") …, so that the mask falls on token boundaries. SentencePiece's
// dummy prefix "▁" on every piece stands for the " " separators; after "</s>" the string has no
// space, but the LLaMA tokenizer as FastChat uses it (legacy mode) also starts the text after a
// special token with "▁", so this matches it. "</s>" is the eos token, not its five characters.
struct TokenizedChat {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> assistant;  // per token
  int64_t system_end = 0;          // tokens [0, system_end) are <bos> + the system message
};
TokenizedChat tokenize_vicuna(const Conversation& turns, const std::string& system, const model::Tokenizer& tok,
                              int32_t bos_id, int32_t eos_id);

// Reads a ShareGPT JSON file: a list of {"conversations": [{"from": ..., "value": ...}, ...], ...}.
// Errors name the file and the record.
std::vector<Conversation> load_sharegpt(const std::string& path);

}  // namespace ikv::intactkv
