// SentencePiece tokenizer (libsentencepiece) of a LLaMA model. encode() adds no <bos>: callers add
// it where the reference does (the perplexity stream, every loglikelihood request).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace ikv::model {

class Tokenizer {
 public:
  explicit Tokenizer(const std::string& model_file);
  // The same from a .model file's bytes already in memory; `name` stands for the file in errors.
  Tokenizer(std::string_view serialized, const std::string& name);
  ~Tokenizer();
  std::vector<int32_t> encode(const std::string& text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string piece(int32_t id) const;
  int32_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string path_;
};

}  // namespace ikv::model
