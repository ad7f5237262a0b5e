// libFuzzer target: loading a SentencePiece tokenizer.model (a protobuf) from arbitrary bytes, then
// encoding and decoding a fixed string with whatever loaded. Our wrapper must turn every failure into
// an ikv::Error, including exceptions libsentencepiece throws instead of returning a Status. The
// library and libprotobuf are not instrumented: coverage stops at our wrapper (so mutation is
// nearly blind) and ASan sees only what crosses into our code; a crash inside them still fails.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "io/error.h"
#include "model/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    const ikv::model::Tokenizer tok(bytes, "fuzz.model");
    const auto ids = tok.encode("Once upon a time, Sam's kite flew 3 km\n\xe2\x80\x94 ok?");
    const std::string text = tok.decode(ids);
    size_t sink = text.size() + static_cast<size_t>(tok.vocab_size());
    for (int32_t id : ids) sink += tok.piece(id).size();
    asm volatile("" : : "r"(sink));
  } catch (const ikv::Error&) {
  }
  return 0;
}
