// libFuzzer target: an HF tokenizer.json from arbitrary bytes (normalizers, pre-tokenizers with
// regexes, BPE vocab and merges, added tokens, post-processor, decoders), then encoding texts that
// exercise every stage (added tokens, NFD input, digits, whitespace runs, bytes without a token)
// and decoding the ids. Every failure must be an ikv::Error naming the file, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "io/error.h"
#include "model/tokenizer_kinds.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    const auto tok = ikv::model::load_hf_tokenizer(bytes, "fuzz/tokenizer.json", "", "");
    size_t sink = static_cast<size_t>(tok->vocab_size() + tok->bos_id() + tok->eos_id());
    for (const char* text : {"Hello world, it's 12345 caf\xc3\xa9 cafe\xcc\x81\n\n  \t<|x|><s>[INST]",
                             " ab\xe2\x80\x94\xf0\x9f\xa6\x99 \xe4\xbd\xa0\xe5\xa5\xbd", ""}) {
      const auto ids = tok->encode(text);
      sink += tok->decode(ids).size();
      for (int32_t id : ids) sink += tok->piece(id).size();
    }
    asm volatile("" : : "r"(sink));
  } catch (const ikv::Error&) {
  }
  return 0;
}
