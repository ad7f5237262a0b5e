// Choosing a model's tokenizer file and reading its kind from its content (tokenizer.h).
#include "model/tokenizer.h"

#include <filesystem>

#include "io/error.h"
#include "io/mapped_file.h"
#include "model/tokenizer_kinds.h"

namespace ikv::model {
namespace fs = std::filesystem;

namespace {

// JSON (HF tokenizer.json) starts with '{', after any whitespace or a UTF-8 byte order mark.
bool looks_like_json(std::string_view bytes) {
  size_t i = bytes.starts_with("\xEF\xBB\xBF") ? 3 : 0;
  while (i < bytes.size() && (bytes[i] == ' ' || bytes[i] == '\t' || bytes[i] == '\r' || bytes[i] == '\n')) ++i;
  return i < bytes.size() && bytes[i] == '{';
}

std::unique_ptr<Tokenizer> load(std::string_view bytes, const std::string& name, std::string_view config_json,
                                const std::string& config_name) {
  if (looks_like_json(bytes)) return load_hf_tokenizer(bytes, name, config_json, config_name);
  if (looks_like_tiktoken(bytes)) return load_tiktoken(bytes, name);
  return load_sentencepiece(bytes, name);
}

}  // namespace

std::string tokenizer_path_for(const std::string& model_path) {
  fs::path p(model_path);
  std::error_code ec;
  const fs::path dir = fs::is_directory(p, ec) ? p : p.parent_path();
  for (const fs::path& cand : {dir / "tokenizer.json", dir / "tokenizer.model", dir / "tok512.model",
                               dir.parent_path() / "tokenizer.model"})
    if (fs::is_regular_file(cand, ec)) return cand.string();
  fail(model_path, ": no tokenizer.json or tokenizer.model next to the model");
}

std::unique_ptr<Tokenizer> open_tokenizer(const std::string& model_path) {
  return load_tokenizer(tokenizer_path_for(model_path));
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& file) {
  const std::string bytes = io::read_text_file(file);
  const fs::path config = fs::path(file).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  const bool has_config = looks_like_json(bytes) && fs::is_regular_file(config, ec);
  return load(bytes, file, has_config ? io::read_text_file(config.string()) : "", config.string());
}

std::unique_ptr<Tokenizer> load_tokenizer(std::string_view bytes, const std::string& name) {
  return load(bytes, name, "", "");
}

}  // namespace ikv::model
