#include "model/tokenizer.h"

#include <sentencepiece_processor.h>

#include "io/error.h"

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

}  // namespace

Tokenizer::Tokenizer(const std::string& model_file)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()), path_(model_file) {
  load_or_fail(model_file, [&] { return sp_->Load(model_file); });
}

Tokenizer::Tokenizer(std::string_view serialized, const std::string& name)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()), path_(name) {
  load_or_fail(name, [&] { return sp_->LoadFromSerializedProto(serialized); });
}

Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  auto status = sp_->Encode(text, &ids);
  if (!status.ok()) fail(path_, ": encode failed (", status.ToString(), ")");
  return {ids.begin(), ids.end()};
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  auto status = sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &out);
  if (!status.ok()) fail(path_, ": decode failed (", status.ToString(), ")");
  return out;
}

std::string Tokenizer::piece(int32_t id) const { return sp_->IdToPiece(id); }
int32_t Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int32_t Tokenizer::bos_id() const { return sp_->bos_id(); }
int32_t Tokenizer::eos_id() const { return sp_->eos_id(); }

}  // namespace ikv::model
