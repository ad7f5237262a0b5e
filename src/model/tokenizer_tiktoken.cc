// Meta's tiktoken tokenizer.model for LLaMA-3 (3, 3.1, 3.2, 3.3 share it): one "base64(token) rank"
// line per token, 128000 of them. The rest is fixed by Meta's tokenizer.py, not by the file: the
// pre-tokenizer regex below and 256 special tokens at 128000..128255 (<|begin_of_text|> is bos).
// BPE is tiktoken's: merge the adjacent pair whose concatenation has the lowest rank, which is
// bpe::Model with a rule for every split of every token; a pre-token found whole is one token.
// Special-token strings in the text are matched, as the same model's tokenizer.json does in HF
// tokenizers (Meta's own encode() reads them as text), so both files give the same ids.
#include <algorithm>

#include "io/error.h"
#include "model/added_tokens.h"
#include "model/bpe.h"
#include "model/tokenizer_kinds.h"
#include "model/unicode_text.h"

namespace ikv::model {
namespace {

constexpr int32_t kLlama3BaseTokens = 128000;
constexpr int32_t kSpecialTokens = 256;
const char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The special tokens' names, in id order from 128000 (Meta's llama-models, Llama 3.1 and later).
std::vector<std::string> special_names() {
  std::vector<std::string> names = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                                    "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
                                    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"};
  for (int i = 3; names.size() < kSpecialTokens; ++i) names.push_back("<|reserved_special_token_" + std::to_string(i) + "|>");
  return names;
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Standard base64 with padding; false on anything else.
bool base64_decode(std::string_view s, std::string& out) {
  out.clear();
  if (s.empty() || s.size() % 4 != 0) return false;
  size_t pad = 0;
  while (pad < 2 && s[s.size() - 1 - pad] == '=') ++pad;
  uint32_t acc = 0;
  for (size_t i = 0; i < s.size() - pad; ++i) {
    const int v = base64_value(s[i]);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    if (i % 4 == 3) {
      out += static_cast<char>(acc >> 16), out += static_cast<char>(acc >> 8), out += static_cast<char>(acc);
      acc = 0;
    }
  }
  if (pad == 1) out += static_cast<char>(acc >> 10), out += static_cast<char>(acc >> 2);
  if (pad == 2) out += static_cast<char>(acc >> 4);
  return true;
}

// One "token rank" line: its two fields, or false.
bool split_line(std::string_view line, std::string_view& token, std::string_view& rank) {
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0) return false;
  token = line.substr(0, sp), rank = line.substr(sp + 1);
  return !rank.empty() && rank.size() <= 9 && std::all_of(rank.begin(), rank.end(), [](char c) { return c >= '0' && c <= '9'; });
}

class TiktokenTokenizer final : public Tokenizer {
 public:
  TiktokenTokenizer(std::string_view text, const std::string& name);

  std::vector<int32_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string piece(int32_t id) const override {
    if (id < 0 || id >= vocab_size()) return "";
    return id < n_base_ ? bpe::bytes_to_byte_level(bytes_[id]) : specials_[id - n_base_];
  }
  int32_t vocab_size() const override { return n_base_ + kSpecialTokens; }
  int32_t bos_id() const override { return n_base_; }      // <|begin_of_text|>
  int32_t eos_id() const override { return n_base_ + 1; }  // <|end_of_text|>, as Meta's tokenizer.py
  std::string_view kind() const override { return "tiktoken"; }

 private:
  int32_t n_base_ = 0;
  std::vector<std::string> bytes_;  // rank → token bytes
  std::vector<std::string> specials_;
  std::unique_ptr<bpe::Model> model_;
  std::unique_ptr<unicode::Regex> regex_;
  AddedTokenMatcher specials_matcher_;
};

TiktokenTokenizer::TiktokenTokenizer(std::string_view text, const std::string& name) : Tokenizer(name) {
  bpe::Vocab vocab;
  std::string token;
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    std::string_view b64, rank_text;
    if (!split_line(line, b64, rank_text) || !base64_decode(b64, token))
      fail(name, ": line ", line_no, " is not \"BASE64 RANK\" (a tiktoken file)");
    const auto rank = static_cast<int32_t>(std::stol(std::string(rank_text)));
    if (rank >= kLlama3BaseTokens) fail(name, ": line ", line_no, ": rank ", rank, " is outside 0..", kLlama3BaseTokens - 1);
    if (!vocab.emplace(token, rank).second) fail(name, ": line ", line_no, ": token listed twice");
    if (static_cast<int32_t>(bytes_.size()) <= rank) bytes_.resize(rank + 1);
    if (!bytes_[rank].empty()) fail(name, ": line ", line_no, ": rank ", rank, " given twice");
    bytes_[rank] = token;
  }
  n_base_ = static_cast<int32_t>(vocab.size());
  // The regex and the special tokens are LLaMA-3's; another tiktoken vocabulary needs its own.
  if (n_base_ != kLlama3BaseTokens)
    fail(name, ": a tiktoken file of ", n_base_, " tokens; only LLaMA-3's (", kLlama3BaseTokens, ") is supported");
  for (int b = 0; b < 256; ++b)
    if (!vocab.count(std::string(1, static_cast<char>(b)))) fail(name, ": byte ", b, " has no token");

  bpe::Options opt;
  opt.units = bpe::Units::kBytes;
  opt.ignore_merges = true;
  model_ = std::make_unique<bpe::Model>(std::move(vocab), opt);
  for (int32_t rank = 0; rank < n_base_; ++rank) {
    const std::string_view t = bytes_[rank];
    for (size_t i = 1; i < t.size(); ++i) {
      auto l = model_->vocab().find(t.substr(0, i)), r = model_->vocab().find(t.substr(i));
      if (l != model_->vocab().end() && r != model_->vocab().end()) model_->add_merge(l->second, r->second, rank, rank);
    }
  }
  specials_ = special_names();
  std::vector<AddedToken> added;
  for (int32_t i = 0; i < kSpecialTokens; ++i) added.push_back({specials_[i], n_base_ + i, true});
  specials_matcher_ = AddedTokenMatcher(std::move(added));
  regex_ = std::make_unique<unicode::Regex>(kLlama3Pattern, false, name + ": the LLaMA-3 pre-tokenizer");
}

std::vector<int32_t> TiktokenTokenizer::encode(const std::string& text) const {
  if (const size_t bad = unicode::first_invalid_utf8(text); bad != std::string::npos)
    fail(path(), ": cannot encode text that is not UTF-8 (byte ", bad, ")");
  std::vector<int32_t> out;
  std::vector<TextPiece> parts;
  specials_matcher_.split(text, parts);
  bpe::Scratch scratch;
  std::unordered_map<std::string_view, std::vector<int32_t>> cache;  // pre-token → ids, this call
  std::vector<std::pair<size_t, size_t>> matches;
  const std::string_view all(text);
  for (const TextPiece& part : parts) {
    if (part.id >= 0) {
      out.push_back(part.id);
      continue;
    }
    const std::string_view s = all.substr(part.begin, part.end - part.begin);
    matches.clear();
    regex_->find_all(s, matches);
    size_t prev = 0;
    auto word = [&](size_t b, size_t e) {
      if (e <= b) return;
      const std::string_view w = s.substr(b, e - b);
      auto it = cache.find(w);
      if (it == cache.end()) {
        std::vector<int32_t> ids;
        model_->encode_word(w, ids, scratch);
        it = cache.emplace(w, std::move(ids)).first;
      }
      out.insert(out.end(), it->second.begin(), it->second.end());
    };
    for (auto [b, e] : matches) word(prev, b), word(b, e), prev = e;
    word(prev, s.size());
  }
  return out;
}

std::string TiktokenTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids)
    if (id >= 0 && id < n_base_) bytes += bytes_[id];
  return unicode::utf8_lossy(bytes);
}

}  // namespace

bool looks_like_tiktoken(std::string_view bytes) {
  const size_t end = std::min(bytes.find('\n'), bytes.size());
  std::string_view line = bytes.substr(0, end), token, rank;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::string decoded;
  return split_line(line, token, rank) && base64_decode(token, decoded);
}

std::unique_ptr<Tokenizer> load_tiktoken(std::string_view text, const std::string& name) {
  return std::make_unique<TiktokenTokenizer>(text, name);
}

}  // namespace ikv::model
