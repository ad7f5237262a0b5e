#include "intactkv/prefix_spec.h"

#include "io/error.h"

namespace ikv::intactkv {

// FastChat's vicuna_v1.1 conversation template system message.
const char* const kVicunaSystemPrompt =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.";

bool is_prefix_spec(const std::string& spec) {
  return spec == "bos" || spec == "vicuna" || spec.rfind("prompt:", 0) == 0;
}

std::vector<int32_t> prefix_tokens(const std::string& spec, const model::Tokenizer& tok, int32_t bos_id,
                                   int64_t size) {
  std::vector<int32_t> ids{bos_id};
  if (spec == "bos") {
  } else if (spec == "vicuna") {
    for (int32_t t : tok.encode(kVicunaSystemPrompt)) ids.push_back(t);
  } else if (spec.rfind("prompt:", 0) == 0) {
    if (spec.size() == 7) fail("IntactKV prefix 'prompt:' needs a text after the colon");
    for (int32_t t : tok.encode(spec.substr(7))) ids.push_back(t);
  } else {
    fail("IntactKV prefix '", spec, "' is not one of bos, vicuna, prompt:TEXT, or an .ikv.safetensors file");
  }
  if (size < 0) fail("IntactKV size ", size, " must be >= 0");
  if (size > static_cast<int64_t>(ids.size()))
    fail("IntactKV size ", size, " exceeds the ", ids.size(), " tokens of the prefix '", spec.substr(0, 40), "'");
  if (size > 0) ids.resize(size);
  return ids;
}

}  // namespace ikv::intactkv
