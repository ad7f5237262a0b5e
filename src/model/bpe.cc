#include "model/bpe.h"

#include <algorithm>
#include <cstdio>

#include "model/unicode_text.h"

namespace ikv::model::bpe {

const std::array<std::string, 256>& byte_chars() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    int next = 256;  // bytes without a printable Latin-1 character take 256, 257, ... in byte order
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      unicode::append_utf8(t[b], static_cast<char32_t>(printable ? b : next++));
    }
    return t;
  }();
  return table;
}

namespace {

// Code point → byte for the 256 byte_chars() (all below U+0144).
const std::array<int16_t, 0x144>& char_bytes() {
  static const std::array<int16_t, 0x144> table = [] {
    std::array<int16_t, 0x144> t;
    t.fill(-1);
    for (int b = 0; b < 256; ++b) {
      size_t i = 0;
      t[unicode::next_code_point(byte_chars()[b], i)] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return table;
}

bool before(const Scratch::Candidate& a, const Scratch::Candidate& b) {
  return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}
// std heap functions keep the "largest" on top: invert the order.
bool heap_less(const Scratch::Candidate& a, const Scratch::Candidate& b) { return before(b, a); }

}  // namespace

bool byte_level_to_bytes(std::string_view s, std::string& out) {
  out.clear();
  for (size_t i = 0; i < s.size();) {
    if (unicode::utf8_length(static_cast<unsigned char>(s[i])) > s.size() - i) return false;
    const char32_t c = unicode::next_code_point(s, i);
    if (c >= char_bytes().size() || char_bytes()[c] < 0) return false;
    out += static_cast<char>(char_bytes()[c]);
  }
  return true;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes) out += byte_chars()[b];
  return out;
}

Model::Model(Vocab vocab, Options opt) : vocab_(std::move(vocab)), opt_(opt) {
  unit_ids_.fill(-1);
  fallback_ids_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    if (opt_.units == Units::kBytes || b < 0x80) {
      auto it = vocab_.find(std::string(1, static_cast<char>(b)));
      if (it != vocab_.end()) unit_ids_[b] = it->second;
    }
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto it = vocab_.find(std::string_view(name));
    if (it != vocab_.end()) fallback_ids_[b] = it->second;
  }
}

void Model::add_merge(int32_t left, int32_t right, int32_t rank, int32_t merged) {
  merges_[(static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right)] = {rank, merged};
}

void Model::split_units(std::string_view word, std::vector<int32_t>& ids) const {
  bool pending_unk = false;  // HF adds an <unk> when the next known unit (or the end) comes
  for (size_t i = 0; i < word.size();) {
    const size_t len = opt_.units == Units::kBytes ? 1 : std::min(unicode::utf8_length(word[i]), word.size() - i);
    const std::string_view unit = word.substr(i, len);
    i += len;
    int32_t id = -1;
    if (len == 1) {
      id = unit_ids_[static_cast<unsigned char>(unit[0])];
    } else {
      auto it = vocab_.find(unit);
      if (it != vocab_.end()) id = it->second;
    }
    if (id >= 0) {
      if (pending_unk) ids.push_back(opt_.unk_id), pending_unk = false;
      ids.push_back(id);
      continue;
    }
    if (opt_.byte_fallback &&
        std::all_of(unit.begin(), unit.end(), [&](char b) { return fallback_ids_[static_cast<unsigned char>(b)] >= 0; })) {
      for (char b : unit) ids.push_back(fallback_ids_[static_cast<unsigned char>(b)]);
      continue;
    }
    if (opt_.unk_id < 0) continue;
    if (pending_unk && !opt_.fuse_unk) ids.push_back(opt_.unk_id);
    pending_unk = true;
  }
  if (pending_unk) ids.push_back(opt_.unk_id);
}

void Model::merge(Scratch& s) const {
  const auto n = static_cast<int32_t>(s.ids.size());
  s.symbols.resize(n);
  s.heap.clear();
  for (int32_t i = 0; i < n; ++i) s.symbols[i] = {s.ids[i], i - 1, i + 1 < n ? i + 1 : -1};
  for (int32_t i = 0; i + 1 < n; ++i)
    if (const Rule* r = find(s.ids[i], s.ids[i + 1])) s.heap.push_back({r->rank, i, r->merged});
  std::make_heap(s.heap.begin(), s.heap.end(), heap_less);
  auto push = [&](int32_t pos) {
    const Scratch::Symbol& a = s.symbols[pos];
    if (a.next < 0) return;
    if (const Rule* r = find(a.id, s.symbols[a.next].id)) {
      s.heap.push_back({r->rank, pos, r->merged});
      std::push_heap(s.heap.begin(), s.heap.end(), heap_less);
    }
  };
  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end(), heap_less);
    const Scratch::Candidate top = s.heap.back();
    s.heap.pop_back();
    Scratch::Symbol& left = s.symbols[top.pos];
    if (left.id < 0 || left.next < 0) continue;  // merged into its left neighbour, or last
    // A stale entry: the pair at this position changed since it was queued.
    const Rule* r = find(left.id, s.symbols[left.next].id);
    if (!r || r->merged != top.id) continue;
    Scratch::Symbol& right = s.symbols[left.next];
    left.id = top.id;
    right.id = -1;
    left.next = right.next;
    if (right.next >= 0) s.symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push(left.prev);
    push(top.pos);
  }
}

void Model::encode_word(std::string_view word, std::vector<int32_t>& out, Scratch& s) const {
  if (word.empty()) return;
  if (opt_.ignore_merges) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  s.ids.clear();
  split_units(word, s.ids);
  if (s.ids.size() > 1) {
    merge(s);
    for (int32_t i = 0; i >= 0; i = s.symbols[i].next) out.push_back(s.symbols[i].id);
  } else {
    out.insert(out.end(), s.ids.begin(), s.ids.end());
  }
}

}  // namespace ikv::model::bpe
