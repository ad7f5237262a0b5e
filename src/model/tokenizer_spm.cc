// SentencePiece tokenizer.model through libsentencepiece (LLaMA-2, Mistral v0.1, the llama2.c
// models' tok512).
#include <sentencepiece_processor.h>

#include "io/error.h"
#include "model/tokenizer_kinds.h"

namespace ikv::model {
namespace {

// libsentencepiece reports most problems as a Status, but some malformed models throw from deep
// inside it (darts_clone's "zero-length key" for an empty piece, found by fuzz/fuzz_tokenizer.cc);
// both become the one Error naming the file.
template <typename Load>
void load_or_fail(const std::string& name, Load load) {
  sentencepiece::util::Status status;
  try {
    status = load();
  } catch (const std::exception& e) {
    fail(name, ": cannot load SentencePiece model (", e.what(), ")");
  }
  if (!status.ok()) fail(name, ": cannot load SentencePiece model (", status.ToString(), ")");
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& name) : Tokenizer(name) {}
  sentencepiece::SentencePieceProcessor& sp() { return sp_; }

  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int> ids;
    auto status = sp_.Encode(text, &ids);
    if (!status.ok()) fail(path(), ": encode failed (", status.ToString(), ")");
    return {ids.begin(), ids.end()};
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> known;
    for (int32_t id : ids)
      if (id >= 0 && id < sp_.GetPieceSize()) known.push_back(id);
    std::string out;
    auto status = sp_.Decode(known, &out);
    if (!status.ok()) fail(path(), ": decode failed (", status.ToString(), ")");
    return out;
  }
  std::string piece(int32_t id) const override {
    return id >= 0 && id < sp_.GetPieceSize() ? sp_.IdToPiece(id) : std::string();
  }
  int32_t vocab_size() const override { return sp_.GetPieceSize(); }
  int32_t bos_id() const override { return sp_.bos_id(); }
  int32_t eos_id() const override { return sp_.eos_id(); }
  std::string_view kind() const override { return "sentencepiece"; }

 private:
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(std::string_view bytes, const std::string& name) {
  auto t = std::make_unique<SentencePieceTokenizer>(name);
  load_or_fail(name, [&] { return t->sp().LoadFromSerializedProto(bytes); });
  return t;
}

}  // namespace ikv::model
