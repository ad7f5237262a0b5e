// Byte-pair encoding of one pre-token, shared by tokenizer.json's BPE model and tiktoken. It follows
// HF tokenizers' models/bpe (Word::merge_all): split the word into units (bytes, or UTF-8
// characters), look each up (else byte fallback <0xXX>, else <unk>), then repeatedly merge the
// adjacent pair of lowest rank, leftmost first, through a priority queue. tiktoken's rule (merge
// the pair whose concatenation has the lowest rank) is the same loop with the pairs derived from
// its vocabulary.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ikv::model::bpe {

// GPT-2's bytes_to_unicode: the printable character (as UTF-8) that stands for each byte in a
// byte-level vocabulary ("Ġ" for the space, "Ċ" for \n).
const std::array<std::string, 256>& byte_chars();
// The bytes a byte-level string stands for; false when one of its characters is not a byte_chars().
bool byte_level_to_bytes(std::string_view s, std::string& out);
// The byte-level spelling of raw bytes.
std::string bytes_to_byte_level(std::string_view bytes);

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
// Token string (in the model's unit domain: raw bytes for byte-level vocabularies) → id.
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

enum class Units { kBytes, kChars };

struct Options {
  Units units = Units::kBytes;
  bool ignore_merges = false;  // a word found whole in the vocabulary is one token (LLaMA-3, tiktoken)
  bool byte_fallback = false;  // an unknown character becomes its <0xXX> byte tokens
  bool fuse_unk = false;       // consecutive unknown characters become one <unk>
  int32_t unk_id = -1;         // -1: unknown characters are dropped (as HF does without unk_token)
};

// Buffers reused from word to word (one per encode call, so a Model is shared between threads).
struct Scratch {
  struct Symbol {
    int32_t id, prev, next;
  };
  struct Candidate {
    int32_t rank, pos, id;
  };
  std::vector<int32_t> ids;
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
};

class Model {
 public:
  Model(Vocab vocab, Options opt);
  // Merging the pair (left, right) gives `merged` with priority `rank` (lower first). A pair added
  // twice keeps the later rule, as HF's merge map does.
  void add_merge(int32_t left, int32_t right, int32_t rank, int32_t merged);
  void reserve_merges(size_t n) { merges_.reserve(n); }
  const Vocab& vocab() const { return vocab_; }
  // Appends the ids of one pre-token.
  void encode_word(std::string_view word, std::vector<int32_t>& out, Scratch& s) const;

 private:
  struct Rule {
    int32_t rank, merged;
  };
  struct PairHash {
    size_t operator()(uint64_t k) const { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> 17); }
  };
  const Rule* find(int32_t left, int32_t right) const {
    auto it = merges_.find((static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right));
    return it == merges_.end() ? nullptr : &it->second;
  }
  void split_units(std::string_view word, std::vector<int32_t>& ids) const;
  void merge(Scratch& s) const;

  Vocab vocab_;
  Options opt_;
  std::unordered_map<uint64_t, Rule, PairHash> merges_;
  std::array<int32_t, 256> unit_ids_;      // bytes: each byte's id; chars: ASCII characters' ids
  std::array<int32_t, 256> fallback_ids_;  // <0x00>..<0xFF>
};

}  // namespace ikv::model::bpe
