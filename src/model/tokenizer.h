// The tokenizer of a model, one interface over three kinds of file:
//   - Hugging Face tokenizer.json, BPE model (tokenizer_hf.cc): byte-level BPE (LLaMA-3, Qwen2/2.5/3)
//     and SentencePiece-style BPE with byte fallback (Mistral v0.3, LLaMA-2 conversions);
//   - SentencePiece tokenizer.model (tokenizer_spm.cc, libsentencepiece): LLaMA-2, Mistral v0.1;
//   - Meta's tiktoken tokenizer.model for LLaMA-3 (tokenizer_tiktoken.cc).
// A model folder's tokenizer.json, when there is one, is its tokenizer, as for transformers'
// AutoTokenizer; tokenizer.model otherwise. The file's kind is read from its content.
//
// encode() adds no <bos>: callers add it where the reference does (the perplexity stream, every
// loglikelihood request). It is HF's encode(text, add_special_tokens=false): added tokens written
// in the text ("<|im_start|>") are still matched, as HF tokenizers does; SentencePiece reads them
// as plain text, as libsentencepiece does.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ikv::model {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  // Special tokens (<s>, <|begin_of_text|>) decode to nothing, as in SentencePiece and HF's
  // decode(skip_special_tokens=True); ids outside the vocabulary are skipped.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // The token's string as the vocabulary spells it ("▁the", "Ġthe"); "" for an unknown id.
  virtual std::string piece(int32_t id) const = 0;
  // One past the largest id (a model may pad its embedding beyond it: Qwen's 151936 > 151669).
  virtual int32_t vocab_size() const = 0;
  // The token that add_special_tokens=true puts first (SentencePiece's bos, tokenizer.json's
  // TemplateProcessing), or -1 when the tokenizer adds none (Qwen).
  virtual int32_t bos_id() const = 0;
  // End of text as the tokenizer files name it, or -1 when they do not.
  virtual int32_t eos_id() const = 0;
  bool has_bos() const { return bos_id() >= 0; }
  // "tokenizer.json", "sentencepiece" or "tiktoken".
  virtual std::string_view kind() const = 0;
  // The file it was loaded from.
  const std::string& path() const { return path_; }

 protected:
  explicit Tokenizer(std::string path) : path_(std::move(path)) {}

 private:
  std::string path_;
};

// The tokenizer file of a model path: in the model folder (the folder of a llama2.c .bin)
// tokenizer.json, else tokenizer.model, else tok512.model, else the parent folder's
// tokenizer.model (a .bin kept in original/).
std::string tokenizer_path_for(const std::string& model_path);
// The tokenizer of a model path (tokenizer_path_for).
std::unique_ptr<Tokenizer> open_tokenizer(const std::string& model_path);
// A tokenizer file of any kind. For tokenizer.json, a tokenizer_config.json beside it names eos.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& file);
// The same from a file's bytes already in memory; `name` stands for the file in errors.
std::unique_ptr<Tokenizer> load_tokenizer(std::string_view bytes, const std::string& name);

}  // namespace ikv::model
