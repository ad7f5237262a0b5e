#include "model/tokenizer.h"

#include <sentencepiece_processor.h>

#include "io/error.h"

namespace ikv::model {

Tokenizer::Tokenizer(const std::string& model_file)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()), path_(model_file) {
  auto status = sp_->Load(model_file);
  if (!status.ok()) fail(model_file, ": cannot load SentencePiece model (", status.ToString(), ")");
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
