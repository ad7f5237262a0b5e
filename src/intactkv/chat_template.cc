#include "intactkv/chat_template.h"

#include <nlohmann/json.hpp>

#include "io/error.h"
#include "io/mapped_file.h"
#include "io/json.h"

namespace ikv::intactkv {

Conversation vicuna_turns(const Conversation& raw) {
  size_t start = 0;
  while (start < raw.size() && raw[start].from != "human") ++start;
  Conversation turns;
  for (size_t i = start; i < raw.size(); ++i) {
    const char* expected = turns.size() % 2 == 0 ? "human" : "gpt";
    if (raw[i].from != expected || raw[i].value.empty()) break;
    turns.push_back(raw[i]);
  }
  if (turns.size() % 2 == 1) turns.pop_back();
  return turns;
}

std::string render_vicuna(const Conversation& turns, const std::string& system) {
  std::string s = system + " ";
  for (size_t i = 0; i < turns.size(); ++i)
    s += i % 2 == 0 ? "USER: " + turns[i].value + " " : "ASSISTANT: " + turns[i].value + "</s>";
  return s;
}

TokenizedChat tokenize_vicuna(const Conversation& turns, const std::string& system, const model::Tokenizer& tok,
                              int32_t bos_id, int32_t eos_id) {
  TokenizedChat c;
  auto add = [&](const std::vector<int32_t>& ids, uint8_t assistant) {
    c.tokens.insert(c.tokens.end(), ids.begin(), ids.end());
    c.assistant.insert(c.assistant.end(), ids.size(), assistant);
  };
  if (bos_id >= 0) add({bos_id}, 0);  // -1: a model without BOS (Qwen)
  add(tok.encode(system), 0);
  c.system_end = static_cast<int64_t>(c.tokens.size());
  for (size_t i = 0; i + 1 < turns.size(); i += 2) {
    add(tok.encode("USER: " + turns[i].value + " ASSISTANT:"), 0);
    add(tok.encode(turns[i + 1].value), 1);
    add({eos_id}, 1);
  }
  return c;
}

std::vector<Conversation> load_sharegpt(const std::string& path) {
  const nlohmann::json j = io::parse_json(io::read_text_file(path), path);
  if (!j.is_array()) fail(path, ": a ShareGPT file is a JSON list of conversations");
  std::vector<Conversation> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const nlohmann::json& rec = j[i];
    if (!rec.is_object() || !rec.contains("conversations") || !rec["conversations"].is_array())
      fail(path, ": record ", i, " has no \"conversations\" list");
    Conversation conv;
    for (const nlohmann::json& t : rec["conversations"]) {
      if (!t.is_object() || !t.contains("from") || !t["from"].is_string() || !t.contains("value") ||
          !t["value"].is_string())
        fail(path, ": record ", i, " has a turn without string \"from\" and \"value\"");
      conv.push_back({t["from"].get<std::string>(), t["value"].get<std::string>()});
    }
    out.push_back(std::move(conv));
  }
  return out;
}

}  // namespace ikv::intactkv
