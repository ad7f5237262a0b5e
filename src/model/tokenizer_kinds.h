// The loaders behind model::load_tokenizer, one per kind of tokenizer file (tokenizer.h).
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include "model/tokenizer.h"

namespace ikv::model {

// SentencePiece ModelProto (tokenizer_spm.cc).
std::unique_ptr<Tokenizer> load_sentencepiece(std::string_view bytes, const std::string& name);
// HF tokenizer.json (tokenizer_hf.cc); `config_json` is the text of tokenizer_config.json (or "").
std::unique_ptr<Tokenizer> load_hf_tokenizer(std::string_view json, const std::string& name,
                                             std::string_view config_json, const std::string& config_name);
// Meta's tiktoken tokenizer.model for LLaMA-3 (tokenizer_tiktoken.cc).
bool looks_like_tiktoken(std::string_view bytes);
std::unique_ptr<Tokenizer> load_tiktoken(std::string_view text, const std::string& name);

}  // namespace ikv::model
