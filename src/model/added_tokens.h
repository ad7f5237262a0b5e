// Added (special) tokens found inside text, as HF tokenizers' AddedVocabulary does before any
// normalization or pre-tokenization: leftmost-longest, non-overlapping matches of their exact
// strings, honouring single_word, lstrip and rstrip. HF matches them whether or not the caller
// asks for special tokens, so "<|im_start|>" in a prompt is one token.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ikv::model {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = false;
};

// A piece of text: either an added token (id >= 0) or text left to tokenize (id == -1).
struct TextPiece {
  size_t begin, end;
  int32_t id;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);
  bool empty() const { return tokens_.empty(); }
  // Splits text[begin, end) into added tokens and the text between them (non-empty pieces only).
  void split(std::string_view text, std::vector<TextPiece>& out) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t token = -1;  // index into tokens_ of the token ending here
  };
  // Index into tokens_ and end of the longest token starting at text[i], or -1.
  int32_t longest_at(std::string_view text, size_t i, size_t& end) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> trie_;
  bool first_byte_[256] = {};
};

}  // namespace ikv::model
