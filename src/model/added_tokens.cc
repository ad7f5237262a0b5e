#include "model/added_tokens.h"

#include "model/unicode_text.h"

namespace ikv::model {
namespace {

// The code point that ends text[0, end) (well-formed UTF-8), and its start.
char32_t code_point_before(std::string_view text, size_t end, size_t& start) {
  start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  size_t i = start;
  return unicode::next_code_point(text, i);
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)), trie_(1) {
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& s = tokens_[t].content;
    if (s.empty()) continue;  // HF ignores empty added tokens
    first_byte_[static_cast<unsigned char>(s[0])] = true;
    int32_t node = 0;
    for (unsigned char c : s) {
      int32_t next = -1;
      for (const auto& [byte, child] : trie_[node].children)
        if (byte == c) next = child;
      if (next < 0) {
        next = static_cast<int32_t>(trie_.size());
        trie_[node].children.emplace_back(c, next);
        trie_.emplace_back();
      }
      node = next;
    }
    if (trie_[node].token < 0) trie_[node].token = static_cast<int32_t>(t);  // the first of duplicates
  }
}

int32_t AddedTokenMatcher::longest_at(std::string_view text, size_t i, size_t& end) const {
  int32_t node = 0, best = -1;
  for (size_t j = i; j < text.size(); ++j) {
    const auto c = static_cast<unsigned char>(text[j]);
    int32_t next = -1;
    for (const auto& [byte, child] : trie_[node].children)
      if (byte == c) next = child;
    if (next < 0) break;
    node = next;
    if (trie_[node].token >= 0) best = trie_[node].token, end = j + 1;
  }
  return best;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<TextPiece>& out) const {
  size_t done = 0;  // text before this is in `out`
  auto add_text = [&](size_t b, size_t e) {
    if (e > b) out.push_back({b, e, -1});
  };
  for (size_t i = 0; i < text.size() && !tokens_.empty();) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    size_t stop = 0;
    const int32_t t = longest_at(text, i, stop);
    if (t < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = tokens_[t];
    size_t start = i;
    i = stop;  // matches never overlap, even when one is dropped below
    if (tok.single_word) {
      size_t cp_start = 0, cp_next = stop;
      const bool word_before = start > 0 && unicode::is_word_char(code_point_before(text, start, cp_start));
      const bool word_after = stop < text.size() && unicode::is_word_char(unicode::next_code_point(text, cp_next));
      if (word_before || word_after) continue;
    }
    if (tok.lstrip) {
      size_t b = start, cp_start = 0;
      while (b > done && unicode::is_white_space(code_point_before(text, b, cp_start))) b = cp_start;
      start = b;
    }
    if (tok.rstrip) {
      size_t e = stop;
      while (e < text.size()) {
        size_t next = e;
        if (!unicode::is_white_space(unicode::next_code_point(text, next))) break;
        e = next;
      }
      stop = e;
      i = stop;
    }
    add_text(done, start);
    out.push_back({start, stop, tok.id});
    done = stop;
  }
  add_text(done, text.size());
}

}  // namespace ikv::model
