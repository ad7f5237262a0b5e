// The zero-shot lm-eval tasks: each loader is the task yaml of lm-evaluation-harness v0.4
// (doc_to_text / doc_to_choice / doc_to_target) applied to the bundle's copy of the dataset.
// Continuations get lm-eval's default target_delimiter " " in front of the choice text.
#include <cctype>
#include <string>

#include "eval/dataset_io.h"
#include "eval/task_loaders.h"
#include "io/error.h"

namespace ikv::eval {
namespace {

using nlohmann::json;

TaskDoc shared_context_doc(const std::string& context, const std::vector<std::string>& choices, int gold) {
  TaskDoc d;
  for (const std::string& c : choices) d.options.push_back({context, " " + c});
  d.gold = gold;
  return d;
}

const json& field(const json& obj, const char* key, const std::string& path, int64_t line) {
  auto it = obj.find(key);
  if (it == obj.end()) fail(path, ":", line, ": missing field \"", key, "\"");
  return *it;
}

std::string string_field(const json& obj, const char* key, const std::string& path, int64_t line) {
  const json& v = field(obj, key, path, line);
  if (!v.is_string()) fail(path, ":", line, ": field \"", key, "\" is not a string");
  return v.get<std::string>();
}

// Python's str.strip() for the ASCII whitespace that occurs in the data.
std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// ARC and OpenBookQA share the AI2 layout: {"question": {"stem", "choices": [{"text", "label"}]},
// "answerKey"}. Gold is choices.label.index(answerKey) as in the yamls, so numeric labels ("1".."4")
// and letters ("A".."E") both work, and 3- or 5-choice questions keep their own count.
struct Ai2Question {
  std::string stem;
  std::vector<std::string> texts;
  int gold;
};

Ai2Question parse_ai2(const JsonLine& row, const std::string& path, bool lstrip_key) {
  Ai2Question q;
  const json& question = field(row.value, "question", path, row.line);
  q.stem = string_field(question, "stem", path, row.line);
  const json& choices = field(question, "choices", path, row.line);
  if (!choices.is_array() || choices.empty()) fail(path, ":", row.line, ": \"choices\" is not a non-empty list");
  std::string key = string_field(row.value, "answerKey", path, row.line);
  if (lstrip_key) key.erase(0, key.find_first_not_of(" \t\n\r\f\v"));
  q.gold = -1;
  for (const json& c : choices) {
    if (string_field(c, "label", path, row.line) == key && q.gold < 0) q.gold = static_cast<int>(q.texts.size());
    q.texts.push_back(string_field(c, "text", path, row.line));
  }
  if (q.gold < 0) fail(path, ":", row.line, ": answerKey \"", key, "\" is not one of the choice labels");
  return q;
}

// arc_easy / arc_challenge: doc_to_text "Question: {{question}}\nAnswer:", choices " {text}".
std::vector<TaskDoc> load_arc(const TaskOptions& o, const std::string& rel) {
  DataFile f = read_dataset_file(o.data_root, rel);
  std::vector<TaskDoc> docs;
  for (const JsonLine& row : parse_jsonl(f)) {
    Ai2Question q = parse_ai2(row, f.path, /*lstrip_key=*/false);
    docs.push_back(shared_context_doc("Question: " + q.stem + "\nAnswer:", q.texts, q.gold));
  }
  keep_first(docs, o.limit);
  return docs;
}

}  // namespace

std::vector<TaskDoc> load_arc_easy(const TaskOptions& o, const std::vector<std::string>& files) {
  return load_arc(o, files.at(0));
}

std::vector<TaskDoc> load_arc_challenge(const TaskOptions& o, const std::vector<std::string>& files) {
  return load_arc(o, files.at(0));
}

// openbookqa: doc_to_text is the bare question_stem; gold = labels.index(answerKey.lstrip()).
std::vector<TaskDoc> load_openbookqa(const TaskOptions& o, const std::vector<std::string>& files) {
  DataFile f = read_dataset_file(o.data_root, files.at(0));
  std::vector<TaskDoc> docs;
  for (const JsonLine& row : parse_jsonl(f)) {
    Ai2Question q = parse_ai2(row, f.path, /*lstrip_key=*/true);
    docs.push_back(shared_context_doc(q.stem, q.texts, q.gold));
  }
  keep_first(docs, o.limit);
  return docs;
}

// boolq (super_glue/boolq): "{{passage}}\nQuestion: {{question}}?\nAnswer:", choices no/yes.
// lm-eval reads SuperGLUE's copy, whose passage is "<title> -- <passage>" (e.g. "Ethanol fuel --
// All biomass goes through …"); the bundle has Google's original release with title and passage
// apart, so the SuperGLUE passage is rebuilt here. Gold: answer true -> 1 ("yes").
std::vector<TaskDoc> load_boolq(const TaskOptions& o, const std::vector<std::string>& files) {
  DataFile f = read_dataset_file(o.data_root, files.at(0));
  std::vector<TaskDoc> docs;
  for (const JsonLine& row : parse_jsonl(f)) {
    std::string passage = string_field(row.value, "title", f.path, row.line) + " -- " +
                          string_field(row.value, "passage", f.path, row.line);
    std::string question = string_field(row.value, "question", f.path, row.line);
    const json& answer = field(row.value, "answer", f.path, row.line);
    if (!answer.is_boolean()) fail(f.path, ":", row.line, ": field \"answer\" is not true/false");
    docs.push_back(shared_context_doc(passage + "\nQuestion: " + question + "?\nAnswer:", {"no", "yes"},
                                      answer.get<bool>() ? 1 : 0));
  }
  keep_first(docs, o.limit);
  return docs;
}

// winogrande (preprocess_winogrande.py): partial evaluation. Each option fills the blank and the
// sentence up to it is the context (sentence[:idx] + option); the continuation is the rest of the
// sentence, stripped, after the " " delimiter. The two requests differ in context only.
std::vector<TaskDoc> load_winogrande(const TaskOptions& o, const std::vector<std::string>& files) {
  DataFile f = read_dataset_file(o.data_root, files.at(0));
  std::vector<TaskDoc> docs;
  for (const JsonLine& row : parse_jsonl(f)) {
    std::string sentence = string_field(row.value, "sentence", f.path, row.line);
    size_t blank = sentence.find('_');
    if (blank == std::string::npos) fail(f.path, ":", row.line, ": sentence has no \"_\" blank");
    std::string target = " ";
    target += strip(sentence.substr(blank + 1));
    std::string answer = string_field(row.value, "answer", f.path, row.line);
    if (answer != "1" && answer != "2") fail(f.path, ":", row.line, ": answer \"", answer, "\" is not \"1\" or \"2\"");
    TaskDoc d;
    for (const char* key : {"option1", "option2"})
      d.options.push_back({sentence.substr(0, blank) + string_field(row.value, key, f.path, row.line), target});
    d.gold = answer == "1" ? 0 : 1;
    docs.push_back(std::move(d));
  }
  keep_first(docs, o.limit);
  return docs;
}

// hellaswag: the bundle has the llama.cpp text format (klosax/hellaswag_text_data), 6 lines per
// item: "<activity_label>: <ctx>", the gold index, the 4 endings, already cleaned of WikiHow's
// [header]/[step]/[title] tags. Context = line 1, choices " <ending>". This is close to but not
// exactly lm-eval's query: for the first item lm-eval gives "Roof shingle removal: A man is
// sitting on a roof. He" (it joins ctx_a + " " + ctx_b.capitalize()) where the file has "… roof.
// he", and lm-eval also deletes any other [bracketed] text (2 contexts here keep e.g.
// "[www.kiddio.org]"). ctx_a/ctx_b cannot be separated again from the file, so we score the file
// as is: numbers match llama.cpp-format scorers on this file, and differ slightly from lm-eval on
// the HF dataset.
namespace {

// lm-eval's hellaswag preprocess(): strip, " [title]" -> ". ", drop [bracketed] text (up to the
// next ']'), "  " -> " " (once, left to right, as str.replace does).
std::string hellaswag_preprocess(std::string text) {
  const char* ws = " \t\n\r\v\f";
  const size_t b = text.find_first_not_of(ws);
  text = b == std::string::npos ? "" : text.substr(b, text.find_last_not_of(ws) - b + 1);
  auto replace_all = [](std::string& s, const std::string& from, const std::string& to) {
    std::string out;
    for (size_t pos = 0;;) {
      const size_t at = s.find(from, pos);
      out += s.substr(pos, at == std::string::npos ? std::string::npos : at - pos);
      if (at == std::string::npos) break;
      out += to;
      pos = at + from.size();
    }
    s = out;
  };
  replace_all(text, " [title]", ". ");
  std::string kept;
  for (size_t i = 0; i < text.size(); ++i) {
    const size_t close = text[i] == '[' ? text.find(']', i + 1) : std::string::npos;
    if (close == std::string::npos) {
      kept += text[i];
    } else {
      i = close;
    }
  }
  replace_all(kept, "  ", " ");
  return kept;
}

// Python's str.capitalize() on ASCII: first letter upper, the rest lower (other bytes unchanged).
std::string py_capitalize(std::string s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char ch = static_cast<unsigned char>(s[i]);
    if (ch < 0x80) s[i] = static_cast<char>(i == 0 ? std::toupper(ch) : std::tolower(ch));
  }
  return s;
}

// The canonical hellaswag_val.jsonl (rowanz/hellaswag) the way lm-eval reads it:
// query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()), choices =
// preprocess(ending) each after a " ", gold = label.
std::vector<TaskDoc> load_hellaswag_jsonl(const TaskOptions& o, const std::string& rel) {
  DataFile f = read_dataset_file(o.data_root, rel);
  std::vector<TaskDoc> docs;
  for (const JsonLine& row : parse_jsonl(f)) {
    const std::string query = hellaswag_preprocess(json_string(row, "activity_label", f.path) + ": " +
                                                   json_string(row, "ctx_a", f.path) + " " +
                                                   py_capitalize(json_string(row, "ctx_b", f.path)));
    const nlohmann::json& endings = row.value.value("endings", nlohmann::json());
    if (!endings.is_array() || endings.size() != 4)
      fail(f.path, ":", row.line, ": \"endings\" is not a list of 4 strings");
    std::vector<std::string> choices;
    for (const auto& e : endings) {
      if (!e.is_string()) fail(f.path, ":", row.line, ": \"endings\" is not a list of 4 strings");
      choices.push_back(hellaswag_preprocess(e.get<std::string>()));
    }
    const nlohmann::json& label = row.value.value("label", nlohmann::json());
    const int gold = label.is_number_integer() ? label.get<int>() : -1;
    if (gold < 0 || gold > 3) fail(f.path, ":", row.line, ": \"label\" is not 0-3");
    docs.push_back(shared_context_doc(query, choices, gold));
  }
  keep_first(docs, o.limit);
  return docs;
}

}  // namespace

std::vector<TaskDoc> load_hellaswag(const TaskOptions& o, const std::vector<std::string>& files) {
  if (files.at(0).ends_with(".jsonl")) return load_hellaswag_jsonl(o, files[0]);
  DataFile f = read_dataset_file(o.data_root, files.at(0));
  std::vector<TextLine> lines = split_lines(f.text);
  if (lines.size() % 6 != 0)
    fail(f.path, ": ", lines.size(), " lines is not a multiple of 6 (context, label, 4 endings per item)");
  std::vector<TaskDoc> docs;
  for (size_t i = 0; i < lines.size(); i += 6) {
    const TextLine& label = lines[i + 1];
    if (label.text.size() != 1 || label.text[0] < '0' || label.text[0] > '3')
      fail(f.path, ":", label.line, ": gold label \"", label.text, "\" is not 0-3");
    docs.push_back(shared_context_doc(lines[i].text,
                                      {lines[i + 2].text, lines[i + 3].text, lines[i + 4].text, lines[i + 5].text},
                                      label.text[0] - '0'));
    if (o.limit > 0 && static_cast<int64_t>(docs.size()) >= o.limit) break;
  }
  return docs;
}

// piqa: "Question: {{goal}}\nAnswer:", choices " {sol1}", " {sol2}"; gold from valid-labels.lst.
std::vector<TaskDoc> load_piqa(const TaskOptions& o, const std::vector<std::string>& files) {
  DataFile f = read_dataset_file(o.data_root, files.at(0));
  DataFile lf = read_dataset_file(o.data_root, files.at(1));
  std::vector<JsonLine> rows = parse_jsonl(f);
  std::vector<TextLine> labels;
  for (TextLine& l : split_lines(lf.text))
    if (!l.text.empty()) labels.push_back(std::move(l));
  if (labels.size() != rows.size())
    fail(lf.path, ": ", labels.size(), " labels for ", rows.size(), " questions in ", f.path);
  std::vector<TaskDoc> docs;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (labels[i].text != "0" && labels[i].text != "1")
      fail(lf.path, ":", labels[i].line, ": label \"", labels[i].text, "\" is not 0 or 1");
    const JsonLine& r = rows[i];
    docs.push_back(shared_context_doc("Question: " + string_field(r.value, "goal", f.path, r.line) + "\nAnswer:",
                                      {string_field(r.value, "sol1", f.path, r.line),
                                       string_field(r.value, "sol2", f.path, r.line)},
                                      labels[i].text == "1" ? 1 : 0));
  }
  keep_first(docs, o.limit);
  return docs;
}

// lambada_openai (output_type loglikelihood): context = text.split(' ')[:-1] joined by ' ' (all
// before the last space), target = ' ' + the last word. No delimiter is added for this output type:
// the space is part of the target, as in the yaml.
std::vector<TaskDoc> load_lambada_openai(const TaskOptions& o, const std::vector<std::string>& files) {
  DataFile f = read_dataset_file(o.data_root, files.at(0));
  std::vector<TaskDoc> docs;
  for (const JsonLine& row : parse_jsonl(f)) {
    std::string text = string_field(row.value, "text", f.path, row.line);
    size_t last = text.rfind(' ');
    TaskDoc d;
    if (last == std::string::npos)
      d.options.push_back({"", " " + text});
    else
      d.options.push_back({text.substr(0, last), text.substr(last)});
    docs.push_back(std::move(d));
  }
  keep_first(docs, o.limit);
  return docs;
}

}  // namespace ikv::eval
