// The Unicode pieces the tokenizers need: UTF-8 walking and lossy repair, normalization forms and
// character properties (ICU), and a regex with Unicode classes (PCRE2, UTF + UCP) whose `\s` is
// Oniguruma's, the engine HF tokenizers compiles its Split patterns with.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ikv::model::unicode {

// Length of the UTF-8 sequence starting with lead byte `b` (1 for a stray byte), for walking text
// already known to be well-formed.
inline size_t utf8_length(unsigned char b) { return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }
// Offset of the first byte that is not well-formed UTF-8 (NUL is fine, as in a Rust &str), or
// std::string_view::npos.
size_t first_invalid_utf8(std::string_view s);
// The code point at s[i] (well-formed text); advances i past it.
char32_t next_code_point(std::string_view s, size_t& i);
void append_utf8(std::string& out, char32_t c);
// Ill-formed sequences replaced by U+FFFD, one per maximal subpart (Rust's String::from_utf8_lossy).
std::string utf8_lossy(std::string_view bytes);

enum class NormalForm { kNFC, kNFD, kNFKC, kNFKD };
// The normal form of well-formed UTF-8 text (ICU); text already in that form is returned as is.
std::string normalize(std::string_view text, NormalForm form);

// Unicode White_Space (Rust's char::is_whitespace, regex `\s`).
bool is_white_space(char32_t c);
// Rust regex `\w`: Alphabetic, marks, decimal digits, connector punctuation, Join_Control.
bool is_word_char(char32_t c);

// A compiled PCRE2 pattern. `\s` and `\S` are rewritten to Unicode White_Space (Oniguruma's
// meaning; PCRE2's own `\s` also takes U+180E). Safe to share between threads.
class Regex {
 public:
  // `literal`: the pattern is a plain string. Errors name `where` (file and key).
  Regex(const std::string& pattern, bool literal, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Every non-empty match in text, left to right, as byte [begin, end) pairs.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  struct Code;
  std::unique_ptr<Code> code_;
  std::string where_;
};

}  // namespace ikv::model::unicode
