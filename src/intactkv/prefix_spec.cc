#include "intactkv/prefix_spec.h"

#include "io/error.h"

namespace ikv::intactkv {

// FastChat's vicuna_v1.1 conversation template system message.
const char* const kVicunaSystemPrompt =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.";

ChatFormat chat_format(const model::Tokenizer& tok) {
  // An added token encodes to one id; to SentencePiece (and LLaMA-2's vocabulary) it is text.
  auto single = [&](const char* s) { return tok.encode(s).size() == 1; };
  if (single("<|start_header_id|>")) return ChatFormat::Llama3;
  if (single("<|im_start|>")) return ChatFormat::ChatML;
  if (single("[INST]")) return ChatFormat::Mistral;
  return ChatFormat::Vicuna;
}

std::string system_turn(ChatFormat format, const std::string& system) {
  switch (format) {
    case ChatFormat::Vicuna: return system;
    case ChatFormat::Llama3: return "<|start_header_id|>system<|end_header_id|>\n\n" + system + "<|eot_id|>";
    case ChatFormat::ChatML: return "<|im_start|>system\n" + system + "<|im_end|>\n";
    case ChatFormat::Mistral: return "[INST] " + system + "\n\n";
  }
  return system;
}

std::string default_system_message(ChatFormat format) {
  return format == ChatFormat::Vicuna ? kVicunaSystemPrompt : "You are a helpful assistant.";
}

bool is_prefix_spec(const std::string& spec) {
  return spec == "bos" || spec == "vicuna" || spec == "system" || spec.rfind("system:", 0) == 0 ||
         spec.rfind("prompt:", 0) == 0;
}

std::vector<int32_t> prefix_tokens(const std::string& spec, const model::Tokenizer& tok, int32_t bos_id,
                                   int64_t size) {
  std::vector<int32_t> ids;
  if (bos_id >= 0) ids.push_back(bos_id);
  auto append = [&](const std::string& text) {
    for (int32_t t : tok.encode(text)) ids.push_back(t);
  };
  if (spec == "bos") {
    if (bos_id < 0)
      fail("IntactKV prefix 'bos': this model has no <bos> token (its tokenizer adds none); use 'system' (its chat "
           "system prompt) or prompt:TEXT");
  } else if (spec == "vicuna") {
    append(kVicunaSystemPrompt);
  } else if (spec == "system" || spec.rfind("system:", 0) == 0) {
    const ChatFormat format = chat_format(tok);
    if (spec == "system:") fail("IntactKV prefix 'system:' needs a text after the colon");
    append(system_turn(format, spec == "system" ? default_system_message(format) : spec.substr(7)));
  } else if (spec.rfind("prompt:", 0) == 0) {
    if (spec.size() == 7) fail("IntactKV prefix 'prompt:' needs a text after the colon");
    append(spec.substr(7));
  } else {
    fail("IntactKV prefix '", spec, "' is not one of bos, vicuna, system[:TEXT], prompt:TEXT, or an .ikv.safetensors file");
  }
  if (ids.empty()) fail("IntactKV prefix '", spec, "' has no tokens");
  if (size < 0) fail("IntactKV size ", size, " must be >= 0");
  if (size > static_cast<int64_t>(ids.size()))
    fail("IntactKV size ", size, " exceeds the ", ids.size(), " tokens of the prefix '", spec.substr(0, 40), "'");
  if (size > 0) ids.resize(size);
  return ids;
}

}  // namespace ikv::intactkv
