// The tokenizers against the reference libraries' ids (data root tokenizers/): HF tokenizers 0.22.2
// for tokenizer.json (LLaMA-3, Qwen3, Mistral v0.3), SentencePiece 0.1.97 for tokenizer.model
// (Mistral v0.3 and v0.1), and llama.cpp's test vectors (made with HF AutoTokenizer). Every id of
// the whole of WikiText-2's test file and of the 153 strings must match. Meta's tiktoken file has
// no reference of its own: it must give the ids of the same model's tokenizer.json.
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "io/error.h"
#include "io/mapped_file.h"
#include "model/tokenizer.h"
#include "model/unicode_text.h"
#include "test_util.h"

using namespace ikv;
namespace fs = std::filesystem;

namespace {

std::string tokenizers_dir() {
  const std::string root = test::data_root();
  return root.empty() ? "" : root + "/tokenizers";
}

// Loaded once per file: the large tokenizer.json files take a few hundred ms each.
const model::Tokenizer& tokenizer(const std::string& file) {
  static std::map<std::string, std::unique_ptr<model::Tokenizer>> loaded;
  auto& t = loaded[file];
  if (!t) {
    const auto t0 = std::chrono::steady_clock::now();
    t = model::load_tokenizer(file);
    MESSAGE(file << ": loaded in " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s");
  }
  return *t;
}

std::vector<int32_t> read_ids(const std::string& path) {
  const std::string text = io::read_text_file(path);
  std::vector<int32_t> ids;
  const char* p = text.c_str();
  char* end = nullptr;
  for (long v = std::strtol(p, &end, 10); end != p; v = std::strtol(p, &end, 10)) ids.push_back(static_cast<int32_t>(v)), p = end;
  return ids;
}

size_t first_difference(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

// The whole of wiki.test.raw as one string, no special tokens; returns the ids.
std::vector<int32_t> check_wikitext(const model::Tokenizer& tok, const std::string& ref_dir) {
  const std::string text = io::read_text_file(test::data_root() + "/datasets/wikitext-2-raw/wiki.test.raw");
  const std::vector<int32_t> expected = read_ids(ref_dir + "/wikitext2-test.ids");
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok.encode(text);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE(tok.path() << ": wiki.test.raw, " << ids.size() << " ids in " << s << " s");
  const size_t d = first_difference(ids, expected);
  INFO("first difference at id " << d << " of " << expected.size());
  CHECK(ids.size() == expected.size());
  CHECK(d == expected.size());
  return ids;
}

// strings.jsonl: {"text", "ids", "add_special_tokens", "set"} per line. Returns the lines checked.
int check_strings(const model::Tokenizer& tok, const std::string& ref_dir) {
  const std::string text = io::read_text_file(ref_dir + "/strings.jsonl");
  int lines = 0, matched = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const auto j = nlohmann::json::parse(text.substr(pos, end - pos));
    pos = end + 1;
    const std::string s = j["text"];
    std::vector<int32_t> ids;
    if (j["add_special_tokens"].get<bool>() && tok.has_bos()) ids.push_back(tok.bos_id());
    for (int32_t id : tok.encode(s)) ids.push_back(id);
    const auto expected = j["ids"].get<std::vector<int32_t>>();
    INFO(tok.path() << ": set " << j["set"].get<std::string>() << ", text " << nlohmann::json(s).dump());
    CHECK(ids == expected);
    ++lines, matched += ids == expected;
  }
  MESSAGE(tok.path() << ": " << matched << "/" << lines << " strings match");
  CHECK(lines == 153);
  return lines;
}

// llama.cpp's NAME.inp (texts, each followed by "\n__ggml_vocab_test__\n") and NAME.out (one line
// of ids per text, each id preceded by a space).
void check_llama_cpp(const model::Tokenizer& tok, const std::string& name) {
  const std::string base = tokenizers_dir() + "/llama.cpp-refs/" + name;
  const std::string inp = io::read_text_file(base + ".inp"), out = io::read_text_file(base + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0; pos < inp.size();) {
    const size_t end = inp.find(sep, pos);
    REQUIRE(end != std::string::npos);
    texts.push_back(inp.substr(pos, end - pos));
    pos = end + sep.size();
  }
  std::vector<std::string> lines;
  for (size_t pos = 0; pos < out.size();) {
    size_t end = out.find('\n', pos);
    if (end == std::string::npos) end = out.size();
    lines.push_back(out.substr(pos, end - pos));
    pos = end + 1;
  }
  REQUIRE(texts.size() == 46);
  REQUIRE(lines.size() == texts.size());
  int matched = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int32_t> expected;
    const char* p = lines[i].c_str();
    char* end = nullptr;
    for (long v = std::strtol(p, &end, 10); end != p; v = std::strtol(p, &end, 10)) expected.push_back(static_cast<int32_t>(v)), p = end;
    INFO(name << " text " << i << ": " << nlohmann::json(texts[i]).dump());
    CHECK(tok.encode(texts[i]) == expected);
    matched += tok.encode(texts[i]) == expected;
  }
  MESSAGE(name << ": " << matched << "/46 match");
}

std::string load_error(const std::string& bytes, const std::string& name = "bad/tokenizer.json") {
  try {
    model::load_tokenizer(bytes, name);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A small byte-level tokenizer.json: single bytes a, b, c, space, merges "a b" then "Ġ ab".
std::string tiny_json(const std::string& pre_tokenizer, const std::string& merges = R"(["a b", "Ġ ab"])") {
  return R"({"normalizer": null, "pre_tokenizer": )" + pre_tokenizer + R"(, "post_processor": null, "decoder": {"type": "ByteLevel"},
    "added_tokens": [{"id": 6, "content": "<|x|>", "special": true}],
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "Ġ": 3, "ab": 4, "Ġab": 5}, "merges": )" +
         merges + "}}";
}
const char* kByteLevel = R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})";

}  // namespace

TEST_CASE("tokenizer.json (HF tokenizers): LLaMA-3, every id of wiki.test.raw and of the reference strings") {
  if (tokenizers_dir().empty()) return;
  const auto& tok = tokenizer(tokenizers_dir() + "/llama3/tokenizer.json");
  CHECK(tok.kind() == "tokenizer.json");
  CHECK(tok.bos_id() == 128000);
  CHECK(tok.eos_id() == 128009);  // tokenizer_config.json: <|eot_id|>
  CHECK(tok.vocab_size() == 128256);
  const std::vector<int32_t> ids = check_wikitext(tok, tokenizers_dir() + "/refs/llama3");
  CHECK(tok.decode(ids) == io::read_text_file(test::data_root() + "/datasets/wikitext-2-raw/wiki.test.raw"));
  check_strings(tok, tokenizers_dir() + "/refs/llama3");
  check_llama_cpp(tok, "ggml-vocab-llama-bpe.gguf");
  CHECK(tok.piece(9906) == "Hello");
  CHECK(tok.piece(22691) == "ĠHello");
  CHECK(tok.decode({128000, 9906, 128001}) == "Hello");
}

TEST_CASE("tiktoken tokenizer.model (Meta): the ids of LLaMA-3's tokenizer.json everywhere") {
  if (tokenizers_dir().empty()) return;
  const auto& tok = tokenizer(tokenizers_dir() + "/llama3/tokenizer.model");
  CHECK(tok.kind() == "tiktoken");
  CHECK(tok.bos_id() == 128000);
  CHECK(tok.eos_id() == 128001);
  CHECK(tok.vocab_size() == 128256);
  const std::vector<int32_t> ids = check_wikitext(tok, tokenizers_dir() + "/refs/llama3");
  CHECK(tok.decode(ids) == io::read_text_file(test::data_root() + "/datasets/wikitext-2-raw/wiki.test.raw"));
  check_strings(tok, tokenizers_dir() + "/refs/llama3");
  check_llama_cpp(tok, "ggml-vocab-llama-bpe.gguf");
  // The same token strings as tokenizer.json (both spelled with GPT-2's byte characters).
  const auto& hf = tokenizer(tokenizers_dir() + "/llama3/tokenizer.json");
  int same = 0;
  for (int32_t id = 0; id < 128000; ++id) same += tok.piece(id) == hf.piece(id);
  CHECK(same == 128000);
  for (int32_t id : {128000, 128001, 128006, 128007, 128009}) CHECK(tok.piece(id) == hf.piece(id));
}

TEST_CASE("tokenizer.json (HF tokenizers): Qwen3 (NFC, no BOS), every id of wiki.test.raw and of the reference strings") {
  if (tokenizers_dir().empty()) return;
  const auto& tok = tokenizer(tokenizers_dir() + "/qwen3/tokenizer.json");
  CHECK(tok.bos_id() == -1);
  CHECK_FALSE(tok.has_bos());
  CHECK(tok.eos_id() == 151645);  // <|im_end|>
  CHECK(tok.vocab_size() == 151669);
  const std::vector<int32_t> ids = check_wikitext(tok, tokenizers_dir() + "/refs/qwen3");
  CHECK(tok.decode(ids) == io::read_text_file(test::data_root() + "/datasets/wikitext-2-raw/wiki.test.raw"));
  check_strings(tok, tokenizers_dir() + "/refs/qwen3");
  check_llama_cpp(tok, "ggml-vocab-qwen2.gguf");
  check_llama_cpp(tok, "ggml-vocab-deepseek-r1-qwen.gguf");
  CHECK(tok.encode("cafe\xCC\x81") == tok.encode("caf\xC3\xA9"));  // NFD input, NFC first
  CHECK(tok.encode("<|im_start|>user\nHi<|im_end|>") == std::vector<int32_t>{151644, 872, 198, 13048, 151645});
}

TEST_CASE("tokenizer.json (HF tokenizers): Mistral v0.3 (Metaspace, byte fallback), every id of wiki.test.raw and of the strings") {
  if (tokenizers_dir().empty()) return;
  const auto& tok = tokenizer(tokenizers_dir() + "/mistral-v0.3/tokenizer.json");
  CHECK(tok.bos_id() == 1);
  CHECK(tok.eos_id() == 2);
  CHECK(tok.vocab_size() == 32768);
  const std::vector<int32_t> ids = check_wikitext(tok, tokenizers_dir() + "/refs/mistral-v0.3");
  CHECK(ids[0] == 29473);  // "▁": the text's leading space gets no second ▁ (SentencePiece: 1027 "▁▁")
  // HF's decoder strips the first space: the text comes back without its leading " ".
  CHECK(tok.decode(ids) == io::read_text_file(test::data_root() + "/datasets/wikitext-2-raw/wiki.test.raw").substr(1));
  check_strings(tok, tokenizers_dir() + "/refs/mistral-v0.3");
  CHECK(tok.encode(" Hello") == std::vector<int32_t>{23325});
  CHECK(tok.decode(tok.encode("Hello\n\tworld")) == "Hello\n\tworld");
}

TEST_CASE("SentencePiece tokenizer.model: Mistral v0.3 and v0.1, every id of wiki.test.raw and of the strings") {
  if (tokenizers_dir().empty()) return;
  for (const char* family : {"mistral-v0.3", "mistral-v0.1"}) {
    const auto& tok = tokenizer(tokenizers_dir() + "/" + family + "/tokenizer.model");
    CHECK(tok.kind() == "sentencepiece");
    CHECK(tok.bos_id() == 1);
    const std::string refs = tokenizers_dir() + "/refs/" + (std::string(family) == "mistral-v0.3" ? "mistral-v0.3-spm" : family);
    check_wikitext(tok, refs);
    check_strings(tok, refs);
  }
}

TEST_CASE("SentencePiece: LLaMA-2's tokenizer gives llama.cpp's llama-spm ids, as before") {
  if (tokenizers_dir().empty()) return;
  const auto tok = model::open_tokenizer(test::model_dir("llama2-tokenizer"));
  CHECK(tok->kind() == "sentencepiece");
  CHECK(tok->bos_id() == 1);
  CHECK(tok->eos_id() == 2);
  CHECK(tok->encode("I believe the meaning of life is") == std::vector<int32_t>{306, 4658, 278, 6593, 310, 2834, 338});
  check_llama_cpp(*tok, "ggml-vocab-llama-spm.gguf");
}

TEST_CASE("the factory: tokenizer.json when the folder has one, tokenizer.model otherwise, kind read from content") {
  if (test::data_root().empty()) return;
  struct Case {
    const char* model;
    const char* file;
    std::string_view kind;
    int32_t bos, vocab;
  };
  for (const Case& c : {Case{"tiny-llama3", "tokenizer.json", "tokenizer.json", 128000, 128256},
                        Case{"tiny-mistral", "tokenizer.json", "tokenizer.json", 1, 32768},  // has tokenizer.model too
                        Case{"tiny-qwen2", "tokenizer.json", "tokenizer.json", -1, 151669},
                        Case{"tiny-qwen3", "tokenizer.json", "tokenizer.json", -1, 151669},
                        Case{"testbed-26M", "tokenizer.model", "sentencepiece", 1, 8192},
                        Case{"stories260K", "tokenizer.model", "sentencepiece", 1, 512}}) {
    INFO(c.model);
    const std::string dir = test::model_dir(c.model);
    CHECK(model::tokenizer_path_for(dir) == dir + "/" + c.file);
    const auto tok = model::open_tokenizer(dir);
    CHECK(tok->kind() == c.kind);
    CHECK(tok->bos_id() == c.bos);
    CHECK(tok->vocab_size() == c.vocab);
    CHECK(tok->path() == dir + "/" + c.file);
  }
  // A llama2.c .bin: its folder's tok512.model.
  const std::string bin = test::model_dir("stories260K") + "/original/stories260K.bin";
  CHECK(model::tokenizer_path_for(bin) == test::model_dir("stories260K") + "/original/tok512.model");
  // The kind comes from the content, whatever the file is called.
  const fs::path tmp = fs::temp_directory_path() / "ikv-test-tokenizer";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  fs::copy_file(tokenizers_dir() + "/llama3/tokenizer.model", tmp / "tokenizer.model");
  CHECK(model::open_tokenizer(tmp.string())->kind() == "tiktoken");
  fs::remove(tmp / "tokenizer.model");
  std::string e;
  try {
    model::open_tokenizer(tmp.string());
  } catch (const Error& err) {
    e = err.what();
  }
  CHECK(e == tmp.string() + ": no tokenizer.json or tokenizer.model next to the model");
  fs::remove_all(tmp);
}

TEST_CASE("tokenizer.json pipeline pieces: byte-level BPE by rank, added tokens, Split behaviours, decoders") {
  const auto tok = model::load_tokenizer(tiny_json(kByteLevel), "tiny.json");
  CHECK(tok->encode("ab ab") == std::vector<int32_t>{4, 5});
  CHECK(tok->encode("abc<|x|>ba") == std::vector<int32_t>{4, 2, 6, 1, 0});
  CHECK(tok->decode({4, 5, 6, 2}) == "ab abc");  // the special token decodes to nothing
  CHECK(tok->bos_id() == -1);
  CHECK(tok->eos_id() == -1);
  CHECK(tok->piece(5) == "Ġab");
  CHECK(tok->piece(99).empty());
  // Merge priority is the rank: with "Ġ a" first, " ab" becomes Ġa + b, and neither is whole.
  const auto other = model::load_tokenizer(
      R"({"pre_tokenizer": {"type": "ByteLevel", "use_regex": false, "add_prefix_space": false},
          "model": {"vocab": {"a": 0, "b": 1, "Ġ": 2, "Ġa": 3, "ab": 4, "Ġab": 5}, "merges": ["Ġ a", "a b", "Ġa b"]}})",
      "rank.json");
  CHECK(other->encode(" ab") == std::vector<int32_t>{5});
  CHECK(other->encode("ab") == std::vector<int32_t>{4});
  const auto no_ab = model::load_tokenizer(
      R"({"pre_tokenizer": {"type": "ByteLevel", "use_regex": false, "add_prefix_space": false},
          "model": {"vocab": {"a": 0, "b": 1, "Ġ": 2, "Ġa": 3, "ab": 4}, "merges": ["Ġ a", "a b"]}})",
      "rank2.json");
  CHECK(no_ab->encode(" ab") == std::vector<int32_t>{3, 1});
  // Split behaviours around the digits of "a1b".
  for (auto [behavior, expected] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"Isolated", {"a", "1", "b"}}, {"Removed", {"a", "b"}}, {"MergedWithPrevious", {"a1", "b"}},
           {"MergedWithNext", {"a", "1b"}}, {"Contiguous", {"a", "1", "b"}}}) {
    INFO(behavior);
    const auto t = model::load_tokenizer(
        R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\d"}, "behavior": ")" + behavior + R"(", "invert": false},
            "model": {"vocab": {"a": 0, "1": 1, "b": 2, "a1": 3, "1b": 4}, "merges": ["a 1", "1 b"]}})",
        "split.json");
    std::vector<std::string> pieces;
    for (int32_t id : t->encode("a1b")) pieces.push_back(t->piece(id));
    CHECK(pieces == expected);
  }
}

TEST_CASE("added tokens: single_word, lstrip and rstrip as HF's AddedVocabulary (its own test cases)") {
  // A character-level vocabulary (no pre-tokenizer, no merges): every character is its own id, so
  // the ids show where the added token <mask> (id 0) was cut out of the text.
  const std::string chars = "<mask>HiMyneAothr\t ";
  std::string vocab = "{";
  for (size_t i = 0; i < chars.size(); ++i) vocab += (i ? ", " : "") + nlohmann::json(chars.substr(i, 1)).dump() + ": " + std::to_string(i + 1);
  vocab += ", \"\u2000\": " + std::to_string(chars.size() + 1) + "}";
  auto load = [&](const std::string& flags) {
    return model::load_tokenizer(R"({"added_tokens": [{"id": 0, "content": "<mask>", )" + flags +
                                     R"(}], "model": {"vocab": )" + vocab + R"(, "merges": []}})",
                                 "mask.json");
  };
  auto pieces = [](const model::Tokenizer& t, const std::string& text) {
    std::string out;
    for (int32_t id : t.encode(text)) out += id == 0 ? "[M]" : t.piece(id);
    return out;
  };
  const auto single = load(R"("single_word": true, "special": true)");
  CHECK(pieces(*single, "<mask> My name <mask> A<mask> <mask>ony <mask>") ==
        "[M] My name [M] A<mask> <mask>ony [M]");
  const auto strip = load(R"("single_word": true, "lstrip": true, "rstrip": true, "special": true)");
  CHECK(pieces(*strip, "Hi <mask> there\t<mask>\t<mask>\xE2\x80\x80") == "Hi[M]there[M][M]");
}

TEST_CASE("the regex's \\s is Oniguruma's (Unicode White_Space), not PCRE2's") {
  const model::unicode::Regex re(R"(\s+|\S+)", false, "test");
  std::vector<std::pair<size_t, size_t>> m;
  re.find_all("a\xE1\xA0\x8E" "b\xC2\x85" "c", m);  // U+180E is not White_Space; U+0085 is
  CHECK(m == std::vector<std::pair<size_t, size_t>>{{0, 5}, {5, 7}, {7, 8}});
  CHECK(model::unicode::utf8_lossy("a\xF0\x9F\xA6" "b\xC0" "c") == "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c");
  CHECK(model::unicode::first_invalid_utf8(std::string("a\0b", 3)) == std::string::npos);
  CHECK(model::unicode::first_invalid_utf8("ab\xED\xA0\x80") == 2);  // a surrogate
}

TEST_CASE("malformed tokenizer files: one-line errors naming the file, never a crash") {
  const std::string name = "bad/tokenizer.json";
  CHECK(load_error("{\"model\": ") .starts_with(name + ": bad JSON"));
  CHECK(load_error("{}") == name + ": tokenizer.json has no \"model\"");
  CHECK(load_error(R"({"model": {"type": "Unigram", "vocab": []}})") ==
        name + ": model type \"Unigram\" is not supported (BPE only)");
  CHECK(load_error(R"({"model": {"vocab": {"a": -3}, "merges": []}})") ==
        name + ": model.vocab[\"a\"] is not an id in 0..2097151");
  CHECK(load_error(R"({"model": {"vocab": {"a": 0}, "merges": ["a b"]}})") ==
        name + ": merge 0: token 'b' is not in the vocabulary");
  CHECK(load_error(R"({"model": {"vocab": {"a": 0}, "merges": ["a"]}})") ==
        name + ": merge 0 \"a\" is not two tokens separated by one space");
  CHECK(load_error(R"({"model": {"vocab": {"a": 0}, "merges": [7]}})") ==
        name + ": merge 0 is neither \"a b\" nor [\"a\", \"b\"]");
  CHECK(load_error(tiny_json(R"({"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"})"))
            .starts_with(name + ": pre_tokenizer: bad regex '(unclosed' (missing closing parenthesis"));
  CHECK(load_error(tiny_json(R"({"type": "Whitespace"})")) ==
        name + ": pre_tokenizer type \"Whitespace\" is not supported (Split, ByteLevel, Metaspace, Sequence)");
  CHECK(load_error(tiny_json(R"({"type": "Sequence", "pretokenizers": [)" + std::string(kByteLevel) +
                             R"(, {"type": "Split", "pattern": {"String": " "}, "behavior": "Isolated"}]})")) ==
        name + ": pre_tokenizer.pretokenizers[1] follows a ByteLevel pre-tokenizer; not supported");
  CHECK(load_error(R"({"normalizer": {"type": "Lowercase"}, "model": {"vocab": {"a": 0}}})") ==
        name + ": normalizer type \"Lowercase\" is not supported (NFC, NFD, NFKC, NFKD, Prepend, Replace, Sequence)");
  CHECK(load_error(R"({"model": {"vocab": {"a": 0}}, "added_tokens": [{"content": "x"}]})") ==
        name + ": added_tokens[0] has no \"id\"");
  CHECK(load_error(R"({"model": {"vocab": {"a": 0}}, "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {}}})") ==
        name + ": post_processor.special_tokens has no \"<s>\"");
  // tiktoken: one bad line, or another vocabulary than LLaMA-3's.
  CHECK(load_error("IQ== 0\nIg== x\n", "bad/tokenizer.model") ==
        "bad/tokenizer.model: line 2 is not \"BASE64 RANK\" (a tiktoken file)");
  CHECK(load_error("IQ== 0\nIg== 1\n", "bad/tokenizer.model") ==
        "bad/tokenizer.model: a tiktoken file of 2 tokens; only LLaMA-3's (128000) is supported");
  // Neither JSON nor tiktoken: SentencePiece's protobuf parser rejects it.
  CHECK(load_error("\x01\x02garbage", "bad/tokenizer.model").starts_with("bad/tokenizer.model: cannot load SentencePiece model"));
  // Text that is not UTF-8 cannot be encoded by the HF pipeline.
  const auto tok = model::load_tokenizer(tiny_json(kByteLevel), "tiny.json");
  std::string e;
  try {
    tok->encode("ab\xFF");
  } catch (const Error& err) {
    e = err.what();
  }
  CHECK(e == "tiny.json: cannot encode text that is not UTF-8 (byte 2)");
}
