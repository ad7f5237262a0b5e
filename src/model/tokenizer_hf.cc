// Hugging Face tokenizer.json with a BPE model, run as HF tokenizers (Rust) runs it:
//   added tokens matched in the raw text → normalizer (NFC/NFD/NFKC/NFKD, Prepend, Replace,
//   Sequence) → pre-tokenizer (Split with a regex, ByteLevel, Metaspace, Sequence) → BPE per
//   pre-token (bpe.h) → post-processor (TemplateProcessing's leading special token is bos_id).
// Decoders: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence. Anything else in
// the file is an Error naming it: a silently different pipeline would give other ids.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "io/error.h"
#include "model/added_tokens.h"
#include "model/bpe.h"
#include "model/tokenizer_kinds.h"
#include "model/unicode_text.h"

namespace ikv::model {
namespace {

using json = nlohmann::json;
using unicode::Regex;

constexpr int64_t kMaxId = int64_t{1} << 21;  // bounds the id → piece table of a malformed file

// GPT-2's pattern, which ByteLevel applies itself when its use_regex is true.
const char kGpt2Pattern[] = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Typed access to the JSON that names the key on failure.
struct Reader {
  const std::string& file;
  const json& at(const json& j, const char* key, const std::string& where) const {
    if (!j.is_object() || !j.contains(key)) fail(file, ": ", where, " has no \"", key, "\"");
    return j.at(key);
  }
  std::string str(const json& j, const char* key, const std::string& where) const {
    const json& v = at(j, key, where);
    if (!v.is_string()) fail(file, ": ", where, ".", key, " is not a string");
    return v.get<std::string>();
  }
  // An optional string ("" when absent or null).
  std::string opt_str(const json& j, const char* key, const std::string& where) const {
    if (!j.is_object() || !j.contains(key) || j.at(key).is_null()) return "";
    return str(j, key, where);
  }
  bool flag(const json& j, const char* key, bool fallback, const std::string& where) const {
    if (!j.is_object() || !j.contains(key) || j.at(key).is_null()) return fallback;
    if (!j.at(key).is_boolean()) fail(file, ": ", where, ".", key, " is not true or false");
    return j.at(key).get<bool>();
  }
  int64_t integer(const json& j, const char* key, const std::string& where) const {
    const json& v = at(j, key, where);
    if (!v.is_number_integer()) fail(file, ": ", where, ".", key, " is not an integer");
    return v.get<int64_t>();
  }
  int32_t id(const json& v, const std::string& where) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= kMaxId)
      fail(file, ": ", where, " is not an id in 0..", kMaxId - 1);
    return static_cast<int32_t>(v.get<int64_t>());
  }
  const json& array(const json& j, const char* key, const std::string& where) const {
    const json& v = at(j, key, where);
    if (!v.is_array()) fail(file, ": ", where, ".", key, " is not an array");
    return v;
  }
  // A {"String": s} or {"Regex": r} pattern.
  std::unique_ptr<Regex> pattern(const json& j, const std::string& where) const {
    const json& p = at(j, "pattern", where);
    if (p.is_object() && p.contains("String") && p.at("String").is_string())
      return std::make_unique<Regex>(p.at("String").get<std::string>(), true, file + ": " + where);
    if (p.is_object() && p.contains("Regex") && p.at("Regex").is_string())
      return std::make_unique<Regex>(p.at("Regex").get<std::string>(), false, file + ": " + where);
    fail(file, ": ", where, ".pattern is neither {\"String\": ...} nor {\"Regex\": ...}");
  }
};

// Every step of a "Sequence" (or the one step), each with its place for errors.
std::vector<std::pair<const json*, std::string>> steps(const Reader& r, const json& j, const char* list_key,
                                                       const std::string& where, int depth = 0) {
  std::vector<std::pair<const json*, std::string>> out;
  if (j.is_null()) return out;
  if (r.str(j, "type", where) != "Sequence") return {{&j, where}};
  if (depth > 8) fail(r.file, ": ", where, ": Sequences nested too deeply");
  const json& list = r.array(j, list_key, where);
  for (size_t i = 0; i < list.size(); ++i) {
    auto sub = steps(r, list[i], list_key, where + "." + list_key + "[" + std::to_string(i) + "]", depth + 1);
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

// Every occurrence of `from` in s replaced by `to` (from non-empty).
std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  for (size_t i = 0;;) {
    const size_t j = s.find(from, i);
    out.append(s.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i));
    if (j == std::string_view::npos) return out;
    out.append(to);
    i = j + from.size();
  }
}

std::string regex_replace(const Regex& re, std::string_view s, std::string_view to) {
  std::vector<std::pair<size_t, size_t>> m;
  re.find_all(s, m);
  std::string out;
  size_t prev = 0;
  for (auto [b, e] : m) out.append(s.substr(prev, b - prev)).append(to), prev = e;
  return out.append(s.substr(prev));
}

struct Normalizer {
  enum Kind { kForm, kPrepend, kReplace } kind = kForm;
  unicode::NormalForm form{};
  std::string text, content;  // Prepend: text; Replace: text (a string pattern) → content
  std::unique_ptr<Regex> regex;  // Replace with a regex pattern
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
enum class PrependScheme { kAlways, kFirst, kNever };

struct PreTokenizer {
  enum Kind { kSplit, kByteLevel, kMetaspace } kind = kSplit;
  std::unique_ptr<Regex> regex;  // Split; ByteLevel with use_regex
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false, add_prefix_space = false, split = false;
  std::string replacement;  // Metaspace
  PrependScheme prepend = PrependScheme::kAlways;
};

struct Decoder {
  enum Kind { kByteLevel, kMetaspace, kReplace, kByteFallback, kFuse, kStrip } kind = kByteLevel;
  std::string text, content;  // Metaspace: text = replacement; Replace: text → content; Strip: content
  std::unique_ptr<Regex> regex;
  PrependScheme prepend = PrependScheme::kAlways;
  int64_t start = 0, stop = 0;
};

// A pre-token: its text and whether it starts the input (HF's offsets_original().0 == 0, which
// Metaspace's prepend_scheme "first" asks).
struct Piece {
  std::string text;
  bool at_start;
};

class HfTokenizer final : public Tokenizer {
 public:
  HfTokenizer(const json& j, const std::string& name, std::string_view config_json, const std::string& config_name);

  std::vector<int32_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string piece(int32_t id) const override {
    return id >= 0 && id < static_cast<int32_t>(pieces_.size()) ? pieces_[id] : std::string();
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  int32_t bos_id() const override { return bos_; }
  int32_t eos_id() const override { return eos_; }
  std::string_view kind() const override { return "tokenizer.json"; }

 private:
  void read_normalizer(const Reader& r, const json& j);
  void read_pre_tokenizer(const Reader& r, const json& j);
  void read_model(const Reader& r, const json& j);
  void read_added_tokens(const Reader& r, const json& j);
  void read_post_processor(const Reader& r, const json& j);
  void read_decoder(const Reader& r, const json& j);
  void read_eos(std::string_view config_json, const std::string& config_name);
  int32_t token_to_id(const std::string& s) const;

  std::string normalize(std::string_view s) const;
  void pre_tokenize(std::vector<Piece>& pieces) const;
  struct EncodeState;
  void encode_text(std::string_view text, bool at_start, EncodeState& st, std::vector<int32_t>& out) const;

  std::vector<Normalizer> normalizers_;
  std::vector<PreTokenizer> pre_tokenizers_;
  bool byte_level_ = false;  // a ByteLevel pre-tokenizer: the model's units are bytes
  std::unique_ptr<bpe::Model> model_;
  std::vector<std::string> pieces_;  // id → token as the file spells it
  std::vector<uint8_t> special_;     // id → a special added token (decode skips it)
  std::vector<AddedToken> added_;
  AddedTokenMatcher raw_added_, normalized_added_;
  std::vector<Decoder> decoders_;
  int32_t bos_ = -1, eos_ = -1;
};

HfTokenizer::HfTokenizer(const json& j, const std::string& name, std::string_view config_json,
                         const std::string& config_name)
    : Tokenizer(name) {
  const Reader r{name};
  if (!j.is_object()) fail(name, ": not a tokenizer.json (the top level is not an object)");
  if (j.contains("truncation") && !j.at("truncation").is_null())
    fail(name, ": truncation is set; ikv encodes whole texts and does not support it");
  read_normalizer(r, j.contains("normalizer") ? j.at("normalizer") : json());
  read_pre_tokenizer(r, j.contains("pre_tokenizer") ? j.at("pre_tokenizer") : json());
  read_model(r, r.at(j, "model", "tokenizer.json"));
  read_added_tokens(r, j.contains("added_tokens") ? j.at("added_tokens") : json::array());
  read_post_processor(r, j.contains("post_processor") ? j.at("post_processor") : json());
  read_decoder(r, j.contains("decoder") ? j.at("decoder") : json());
  read_eos(config_json, config_name);
}

void HfTokenizer::read_normalizer(const Reader& r, const json& j) {
  for (auto& [step, where] : steps(r, j, "normalizers", "normalizer")) {
    const std::string type = r.str(*step, "type", where);
    Normalizer n;
    if (type == "NFC") n.form = unicode::NormalForm::kNFC;
    else if (type == "NFD") n.form = unicode::NormalForm::kNFD;
    else if (type == "NFKC") n.form = unicode::NormalForm::kNFKC;
    else if (type == "NFKD") n.form = unicode::NormalForm::kNFKD;
    else if (type == "Prepend") n.kind = Normalizer::kPrepend, n.text = r.str(*step, "prepend", where);
    else if (type == "Replace") {
      n.kind = Normalizer::kReplace;
      n.content = r.str(*step, "content", where);
      const json& p = r.at(*step, "pattern", where);
      if (p.is_object() && p.contains("String") && p.at("String").is_string() && !p.at("String").get<std::string>().empty())
        n.text = p.at("String").get<std::string>();
      else
        n.regex = r.pattern(*step, where);
    } else {
      fail(r.file, ": ", where, " type \"", type, "\" is not supported (NFC, NFD, NFKC, NFKD, Prepend, Replace, Sequence)");
    }
    normalizers_.push_back(std::move(n));
  }
}

void HfTokenizer::read_pre_tokenizer(const Reader& r, const json& j) {
  for (auto& [step, where] : steps(r, j, "pretokenizers", "pre_tokenizer")) {
    // The model sees ByteLevel's byte characters; a step after it would see them too, which the
    // raw-byte pipeline here does not reproduce.
    if (byte_level_) fail(r.file, ": ", where, " follows a ByteLevel pre-tokenizer; not supported");
    const std::string type = r.str(*step, "type", where);
    PreTokenizer p;
    if (type == "Split") {
      p.regex = r.pattern(*step, where);
      const std::string b = r.str(*step, "behavior", where);
      if (b == "Removed") p.behavior = SplitBehavior::kRemoved;
      else if (b == "Isolated") p.behavior = SplitBehavior::kIsolated;
      else if (b == "MergedWithPrevious") p.behavior = SplitBehavior::kMergedWithPrevious;
      else if (b == "MergedWithNext") p.behavior = SplitBehavior::kMergedWithNext;
      else if (b == "Contiguous") p.behavior = SplitBehavior::kContiguous;
      else fail(r.file, ": ", where, ".behavior \"", b, "\" is not a split behavior");
      p.invert = r.flag(*step, "invert", false, where);
    } else if (type == "ByteLevel") {
      p.kind = PreTokenizer::kByteLevel;
      p.add_prefix_space = r.flag(*step, "add_prefix_space", true, where);
      if (r.flag(*step, "use_regex", true, where)) p.regex = std::make_unique<Regex>(kGpt2Pattern, false, r.file + ": " + where);
      byte_level_ = true;
    } else if (type == "Metaspace") {
      p.kind = PreTokenizer::kMetaspace;
      p.replacement = r.str(*step, "replacement", where);
      if (unicode::first_invalid_utf8(p.replacement) != std::string::npos || p.replacement.empty() ||
          unicode::utf8_length(p.replacement[0]) != p.replacement.size())
        fail(r.file, ": ", where, ".replacement is not one character");
      const std::string scheme = r.opt_str(*step, "prepend_scheme", where);
      if (scheme == "always") p.prepend = PrependScheme::kAlways;
      else if (scheme == "first") p.prepend = PrependScheme::kFirst;
      else if (scheme == "never") p.prepend = PrependScheme::kNever;
      else if (scheme.empty()) p.prepend = r.flag(*step, "add_prefix_space", true, where) ? PrependScheme::kAlways : PrependScheme::kNever;
      else fail(r.file, ": ", where, ".prepend_scheme \"", scheme, "\" is not always, first or never");
      p.split = r.flag(*step, "split", true, where);
    } else {
      fail(r.file, ": ", where, " type \"", type, "\" is not supported (Split, ByteLevel, Metaspace, Sequence)");
    }
    pre_tokenizers_.push_back(std::move(p));
  }
}

void HfTokenizer::read_model(const Reader& r, const json& m) {
  const std::string type = m.is_object() && m.contains("type") ? r.str(m, "type", "model") : "BPE";
  if (type != "BPE") fail(r.file, ": model type \"", type, "\" is not supported (BPE only)");
  if (m.contains("dropout") && !m.at("dropout").is_null() &&
      !(m.at("dropout").is_number() && m.at("dropout").get<double>() == 0.0))
    fail(r.file, ": model.dropout is set; BPE dropout is for training and not supported");
  if (!r.opt_str(m, "continuing_subword_prefix", "model").empty() || !r.opt_str(m, "end_of_word_suffix", "model").empty())
    fail(r.file, ": model.continuing_subword_prefix / end_of_word_suffix are not supported");
  const json& vocab = r.at(m, "vocab", "model");
  if (!vocab.is_object()) fail(r.file, ": model.vocab is not an object");

  bpe::Vocab units;  // the vocabulary in the model's unit domain (raw bytes when byte-level)
  units.reserve(vocab.size());
  int32_t max_id = -1;
  std::string raw;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int32_t id = r.id(it.value(), "model.vocab[\"" + it.key() + "\"]");
    max_id = std::max(max_id, id);
    if (!byte_level_) units.emplace(it.key(), id);
    else if (bpe::byte_level_to_bytes(it.key(), raw)) units.emplace(raw, id);
  }
  pieces_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) pieces_[it.value().get<int32_t>()] = it.key();

  bpe::Options opt;
  opt.units = byte_level_ ? bpe::Units::kBytes : bpe::Units::kChars;
  opt.ignore_merges = r.flag(m, "ignore_merges", false, "model");
  opt.byte_fallback = r.flag(m, "byte_fallback", false, "model");
  opt.fuse_unk = r.flag(m, "fuse_unk", false, "model");
  const std::string unk = r.opt_str(m, "unk_token", "model");
  if (!unk.empty()) {
    if (!vocab.contains(unk)) fail(r.file, ": model.unk_token \"", unk, "\" is not in the vocabulary");
    opt.unk_id = vocab.at(unk).get<int32_t>();
  }
  const json& merges = m.contains("merges") ? r.array(m, "merges", "model") : json::array();
  model_ = std::make_unique<bpe::Model>(std::move(units), opt);
  model_->reserve_merges(merges.size());

  // A merge names its two halves as the file spells them. In a byte-level vocabulary a token whose
  // characters are not all byte characters can never come out of bytes: its merges are skipped.
  auto unit_id = [&](std::string_view s, size_t rank) -> int32_t {
    std::string_view key = s;
    if (byte_level_) {
      if (!bpe::byte_level_to_bytes(s, raw)) {
        if (!vocab.contains(s)) fail(r.file, ": merge ", rank, ": token '", s, "' is not in the vocabulary");
        return -2;
      }
      key = raw;
    }
    auto it = model_->vocab().find(key);
    if (it == model_->vocab().end()) fail(r.file, ": merge ", rank, ": token '", s, "' is not in the vocabulary");
    return it->second;
  };
  std::string merged;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& e = merges[rank];
    std::string_view a, b;
    if (e.is_string()) {  // "a b"
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        fail(r.file, ": merge ", rank, " \"", s, "\" is not two tokens separated by one space");
      a = std::string_view(s).substr(0, sp), b = std::string_view(s).substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {  // ["a", "b"]
      a = e[0].get_ref<const std::string&>(), b = e[1].get_ref<const std::string&>();
    } else {
      fail(r.file, ": merge ", rank, " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    const int32_t left = unit_id(a, rank), right = unit_id(b, rank);
    merged.assign(a).append(b);
    const int32_t id = unit_id(merged, rank);
    if (left >= 0 && right >= 0 && id >= 0) model_->add_merge(left, right, static_cast<int32_t>(rank), id);
  }
}

void HfTokenizer::read_added_tokens(const Reader& r, const json& list) {
  if (!list.is_array()) fail(r.file, ": added_tokens is not an array");
  std::vector<AddedToken> raw, normalized;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = "added_tokens[" + std::to_string(i) + "]";
    AddedToken t;
    t.id = r.id(r.at(list[i], "id", where), where + ".id");
    t.content = r.str(list[i], "content", where);
    t.special = r.flag(list[i], "special", false, where);
    t.single_word = r.flag(list[i], "single_word", false, where);
    t.lstrip = r.flag(list[i], "lstrip", false, where);
    t.rstrip = r.flag(list[i], "rstrip", false, where);
    t.normalized = r.flag(list[i], "normalized", !t.special, where);
    if (unicode::first_invalid_utf8(t.content) != std::string::npos) fail(r.file, ": ", where, ".content is not UTF-8");
    if (t.id >= static_cast<int32_t>(pieces_.size())) pieces_.resize(t.id + 1);
    pieces_[t.id] = t.content;
    if (t.special) {
      if (special_.size() <= static_cast<size_t>(t.id)) special_.resize(t.id + 1, 0);
      special_[t.id] = 1;
    }
    if (t.normalized) t.content = normalize(t.content);
    (t.normalized ? normalized : raw).push_back(t);
    added_.push_back(std::move(t));
  }
  raw_added_ = AddedTokenMatcher(std::move(raw));
  normalized_added_ = AddedTokenMatcher(std::move(normalized));
}

int32_t HfTokenizer::token_to_id(const std::string& s) const {
  for (const AddedToken& t : added_)
    if (t.content == s) return t.id;
  for (size_t id = 0; id < pieces_.size(); ++id)
    if (pieces_[id] == s) return static_cast<int32_t>(id);
  return -1;
}

void HfTokenizer::read_post_processor(const Reader& r, const json& j) {
  for (auto& [step, where] : steps(r, j, "processors", "post_processor")) {
    const std::string type = r.str(*step, "type", where);
    if (type == "ByteLevel") continue;  // offsets only
    if (type != "TemplateProcessing")
      fail(r.file, ": ", where, " type \"", type, "\" is not supported (TemplateProcessing, ByteLevel, Sequence)");
    // The special tokens before $A in the single-sequence template: at most one, the bos. Any
    // after it (an appended eos) are not part of encode(), which adds nothing.
    const json& single = r.array(*step, "single", where);
    const json& specials = r.at(*step, "special_tokens", where);
    std::vector<int32_t> before;
    for (const json& item : single) {
      if (item.is_object() && item.contains("Sequence")) break;
      if (!item.is_object() || !item.contains("SpecialToken") || !item.at("SpecialToken").is_object())
        fail(r.file, ": ", where, ".single holds an item that is neither SpecialToken nor Sequence");
      const std::string name = r.str(item.at("SpecialToken"), "id", where + ".single");
      if (!specials.is_object() || !specials.contains(name))
        fail(r.file, ": ", where, ".special_tokens has no \"", name, "\"");
      for (const json& id : r.array(specials.at(name), "ids", where + ".special_tokens." + name))
        before.push_back(r.id(id, where + ".special_tokens." + name + ".ids"));
    }
    if (before.size() > 1) fail(r.file, ": ", where, " puts ", before.size(), " tokens before the text; one (bos) at most");
    if (!before.empty()) bos_ = before[0];
  }
}

void HfTokenizer::read_decoder(const Reader& r, const json& j) {
  for (auto& [step, where] : steps(r, j, "decoders", "decoder")) {
    const std::string type = r.str(*step, "type", where);
    Decoder d;
    if (type == "ByteLevel") {
    } else if (type == "Metaspace") {
      d.kind = Decoder::kMetaspace;
      d.text = r.str(*step, "replacement", where);
      const std::string scheme = r.opt_str(*step, "prepend_scheme", where);
      d.prepend = scheme == "never" || (scheme.empty() && !r.flag(*step, "add_prefix_space", true, where))
                      ? PrependScheme::kNever
                      : PrependScheme::kAlways;
    } else if (type == "Replace") {
      d.kind = Decoder::kReplace;
      d.content = r.str(*step, "content", where);
      const json& p = r.at(*step, "pattern", where);
      if (p.is_object() && p.contains("String") && p.at("String").is_string() && !p.at("String").get<std::string>().empty())
        d.text = p.at("String").get<std::string>();
      else
        d.regex = r.pattern(*step, where);
    } else if (type == "ByteFallback") {
      d.kind = Decoder::kByteFallback;
    } else if (type == "Fuse") {
      d.kind = Decoder::kFuse;
    } else if (type == "Strip") {
      d.kind = Decoder::kStrip;
      d.content = r.str(*step, "content", where);
      if (d.content.empty() || unicode::utf8_length(d.content[0]) != d.content.size())
        fail(r.file, ": ", where, ".content is not one character");
      d.start = r.integer(*step, "start", where), d.stop = r.integer(*step, "stop", where);
    } else {
      fail(r.file, ": ", where, " type \"", type,
           "\" is not supported (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)");
    }
    decoders_.push_back(std::move(d));
  }
}

void HfTokenizer::read_eos(std::string_view config_json, const std::string& config_name) {
  if (config_json.empty()) return;
  json c;
  try {
    c = json::parse(config_json);
  } catch (const json::exception& e) {
    fail(config_name, ": bad JSON (", e.what(), ")");
  }
  if (!c.is_object() || !c.contains("eos_token")) return;
  const json& e = c.at("eos_token");
  const std::string name = e.is_string()                                                       ? e.get<std::string>()
                           : e.is_object() && e.contains("content") && e["content"].is_string() ? e["content"].get<std::string>()
                                                                                                 : "";
  if (name.empty()) return;
  eos_ = token_to_id(name);
  if (eos_ < 0) fail(config_name, ": eos_token \"", name, "\" is not a token of ", path());
}

std::string HfTokenizer::normalize(std::string_view s) const {
  std::string t(s);
  for (const Normalizer& n : normalizers_) {
    if (n.kind == Normalizer::kForm) t = unicode::normalize(t, n.form);
    else if (n.kind == Normalizer::kPrepend) t = t.empty() ? t : n.text + t;
    else t = n.regex ? regex_replace(*n.regex, t, n.content) : replace_all(t, n.text, n.content);
  }
  return t;
}

// Splits every piece by the pattern's matches, as HF's NormalizedString::split with a behavior.
void split_pieces(const PreTokenizer& p, std::vector<Piece>& pieces) {
  std::vector<Piece> out;
  std::vector<std::pair<size_t, size_t>> matches;
  struct Span {
    size_t b, e;
    bool match;
  };
  std::vector<Span> spans, kept;
  for (Piece& piece : pieces) {
    const std::string_view s = piece.text;
    matches.clear();
    p.regex->find_all(s, matches);
    spans.clear();
    size_t prev = 0;
    for (auto [b, e] : matches) {
      if (b > prev) spans.push_back({prev, b, p.invert});
      spans.push_back({b, e, !p.invert});
      prev = e;
    }
    if (prev < s.size()) spans.push_back({prev, s.size(), p.invert});
    kept.clear();
    bool prev_match = false;
    switch (p.behavior) {
      case SplitBehavior::kIsolated: kept = spans; break;
      case SplitBehavior::kRemoved:
        for (const Span& sp : spans)
          if (!sp.match) kept.push_back(sp);
        break;
      case SplitBehavior::kContiguous:
        for (const Span& sp : spans) {
          if (!kept.empty() && sp.match == prev_match) kept.back().e = sp.e;
          else kept.push_back(sp);
          prev_match = sp.match;
        }
        break;
      case SplitBehavior::kMergedWithPrevious:
        for (const Span& sp : spans) {
          if (!kept.empty() && sp.match && !prev_match) kept.back().e = sp.e;
          else kept.push_back(sp);
          prev_match = sp.match;
        }
        break;
      case SplitBehavior::kMergedWithNext:
        for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
          if (!kept.empty() && it->match && !prev_match) kept.back().b = it->b;
          else kept.push_back(*it);
          prev_match = it->match;
        }
        std::reverse(kept.begin(), kept.end());
        break;
    }
    for (const Span& sp : kept)
      if (sp.e > sp.b) out.push_back({std::string(s.substr(sp.b, sp.e - sp.b)), piece.at_start && sp.b == 0});
  }
  pieces.swap(out);
}

void HfTokenizer::pre_tokenize(std::vector<Piece>& pieces) const {
  for (const PreTokenizer& p : pre_tokenizers_) {
    switch (p.kind) {
      case PreTokenizer::kSplit: split_pieces(p, pieces); break;
      case PreTokenizer::kByteLevel:
        if (p.add_prefix_space)
          for (Piece& piece : pieces)
            if (!piece.text.starts_with(' ')) piece.text.insert(0, 1, ' ');
        if (p.regex) split_pieces(p, pieces);
        break;
      case PreTokenizer::kMetaspace:
        for (Piece& piece : pieces) {
          piece.text = replace_all(piece.text, " ", p.replacement);
          const bool prepend = p.prepend == PrependScheme::kAlways || (p.prepend == PrependScheme::kFirst && piece.at_start);
          if (prepend && !piece.text.starts_with(p.replacement)) piece.text.insert(0, p.replacement);
        }
        if (p.split) {
          // Each replacement character starts a new piece (MergedWithNext).
          std::vector<Piece> out;
          for (const Piece& piece : pieces) {
            size_t b = 0;
            for (size_t i = p.replacement.size(); i <= piece.text.size(); ++i) {
              if (i == piece.text.size() || piece.text.compare(i, p.replacement.size(), p.replacement) == 0) {
                if (i > b) out.push_back({piece.text.substr(b, i - b), piece.at_start && b == 0});
                b = i;
              }
            }
          }
          pieces.swap(out);
        }
        break;
    }
  }
}

// Per encode call: BPE buffers and the ids of pre-tokens already seen (a text repeats most of its
// words), so a shared tokenizer needs no lock.
struct HfTokenizer::EncodeState {
  bpe::Scratch scratch;
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>, bpe::StringHash, std::equal_to<>> cache;
  std::vector<int32_t> cached_ids;
  std::vector<Piece> pieces;
  std::vector<TextPiece> parts;
};

void HfTokenizer::encode_text(std::string_view text, bool at_start, EncodeState& st, std::vector<int32_t>& out) const {
  st.pieces.clear();
  st.pieces.push_back({std::string(text), at_start});
  pre_tokenize(st.pieces);
  constexpr size_t kCachedLength = 64;  // longer pre-tokens are rare and expensive to hash
  for (const Piece& p : st.pieces) {
    if (p.text.size() > kCachedLength) {
      model_->encode_word(p.text, out, st.scratch);
      continue;
    }
    auto it = st.cache.find(std::string_view(p.text));
    if (it == st.cache.end()) {
      const auto begin = static_cast<uint32_t>(st.cached_ids.size());
      model_->encode_word(p.text, st.cached_ids, st.scratch);
      it = st.cache.emplace(p.text, std::make_pair(begin, static_cast<uint32_t>(st.cached_ids.size()) - begin)).first;
    }
    out.insert(out.end(), st.cached_ids.begin() + it->second.first,
               st.cached_ids.begin() + it->second.first + it->second.second);
  }
}

std::vector<int32_t> HfTokenizer::encode(const std::string& text) const {
  if (const size_t bad = unicode::first_invalid_utf8(text); bad != std::string::npos)
    fail(path(), ": cannot encode text that is not UTF-8 (byte ", bad, ")");
  std::vector<int32_t> out;
  EncodeState st;
  std::vector<TextPiece> raw, normalized;
  raw_added_.split(text, raw);
  for (const TextPiece& part : raw) {
    if (part.id >= 0) {
      out.push_back(part.id);
      continue;
    }
    const std::string seg = normalize(std::string_view(text).substr(part.begin, part.end - part.begin));
    normalized.clear();
    normalized_added_.split(seg, normalized);
    for (const TextPiece& sub : normalized) {
      if (sub.id >= 0) out.push_back(sub.id);
      else encode_text(std::string_view(seg).substr(sub.begin, sub.end - sub.begin), part.begin == 0 && sub.begin == 0, st, out);
    }
  }
  return out;
}

// The decoders' steps work on the list of token strings (HF's decode_chain).
std::vector<std::string> byte_fallback(const std::vector<std::string>& tokens) {
  std::vector<std::string> out;
  std::string bytes;
  size_t n_bytes = 0;
  auto flush = [&] {
    if (n_bytes == 0) return;
    if (unicode::first_invalid_utf8(bytes) == std::string::npos) out.push_back(bytes);
    else for (size_t i = 0; i < n_bytes; ++i) out.push_back("\xEF\xBF\xBD");
    bytes.clear(), n_bytes = 0;
  };
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); };
  for (const std::string& t : tokens) {
    if (t.size() == 6 && t.starts_with("<0x") && t[5] == '>' && hex(t[3]) && hex(t[4])) {
      bytes += static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16));
      ++n_bytes;
    } else {
      flush();
      out.push_back(t);
    }
  }
  flush();
  return out;
}

std::string HfTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<std::string> tokens;
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int32_t>(pieces_.size())) continue;
    if (static_cast<size_t>(id) < special_.size() && special_[id]) continue;
    tokens.push_back(pieces_[id]);
  }
  if (decoders_.empty()) {  // HF joins the tokens with spaces
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  std::string raw;
  for (const Decoder& d : decoders_) {
    switch (d.kind) {
      case Decoder::kByteLevel: {
        std::string bytes;
        for (const std::string& t : tokens) bytes += bpe::byte_level_to_bytes(t, raw) ? raw : t;
        tokens.assign(1, unicode::utf8_lossy(bytes));
        break;
      }
      case Decoder::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i)
          tokens[i] = replace_all(tokens[i], d.text, i == 0 && d.prepend != PrependScheme::kNever ? "" : " ");
        break;
      case Decoder::kReplace:
        for (std::string& t : tokens) t = d.regex ? regex_replace(*d.regex, t, d.content) : replace_all(t, d.text, d.content);
        break;
      case Decoder::kByteFallback: tokens = byte_fallback(tokens); break;
      case Decoder::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, all);
        break;
      }
      case Decoder::kStrip:
        for (std::string& t : tokens) {
          const std::string& c = d.content;
          size_t b = 0, e = t.size();
          for (int64_t k = 0; k < d.start && b + c.size() <= e && t.compare(b, c.size(), c) == 0; ++k) b += c.size();
          for (int64_t k = 0; k < d.stop && e >= b + c.size() && t.compare(e - c.size(), c.size(), c) == 0; ++k) e -= c.size();
          t = t.substr(b, e - b);
        }
        break;
    }
  }
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(std::string_view text, const std::string& name, std::string_view config_json,
                                             const std::string& config_name) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail(name, ": bad JSON (", e.what(), ")");
  }
  try {
    return std::make_unique<HfTokenizer>(j, name, config_json, config_name);
  } catch (const json::exception& e) {  // a value of an unexpected type that a Reader check missed
    fail(name, ": unexpected tokenizer.json content (", e.what(), ")");
  }
}

}  // namespace ikv::model
