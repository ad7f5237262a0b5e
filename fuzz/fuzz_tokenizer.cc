// libFuzzer target: a tokenizer file of any kind from arbitrary bytes (model::load_tokenizer reads
// the kind from the content: JSON, tiktoken lines, else a SentencePiece protobuf), then encoding and
// decoding a fixed string with whatever loaded. Every failure must become an ikv::Error, including
// exceptions libsentencepiece throws instead of returning a Status. libsentencepiece and
// libprotobuf are not instrumented: for the SentencePiece seeds coverage stops at our wrapper (so
// mutation is nearly blind) and ASan sees only what crosses into our code; a crash inside them
// still fails. fuzz_tokenizer_json.cc covers the tokenizer.json parser and pipeline.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "io/error.h"
#include "model/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    const auto tok = ikv::model::load_tokenizer(bytes, "fuzz.model");
    const auto ids = tok->encode("Once upon a time, Sam's kite flew 3 km\n\xe2\x80\x94 ok?");
    const std::string text = tok->decode(ids);
    size_t sink = text.size() + static_cast<size_t>(tok->vocab_size());
    for (int32_t id : ids) sink += tok->piece(id).size();
    asm volatile("" : : "r"(sink));
  } catch (const ikv::Error&) {
  }
  return 0;
}
