// MMLU the way the IntactKV repo scores it (eval_utils/mmlu.py, itself Hendrycks' evaluate.py),
// not lm-eval's mmlu task: k-shot prompts from the subject's dev file, the answer is the argmax of
// the next-token scores of "A".."D" after "Answer:".
#include <set>
#include <string>

#include "eval/dataset_io.h"
#include "eval/task_loaders.h"
#include "io/error.h"

namespace ikv::eval {

const std::vector<MmluSubject>& mmlu_subjects() {
  // Hendrycks' categories.py: subject -> subcategory -> category ("other" is the reference's
  // "other (business, health, misc.)"). Sorted by name, as the reference sorts the test folder.
  static const std::vector<MmluSubject> subjects = {
      {"abstract_algebra", "math", "stem"},
      {"anatomy", "health", "other"},
      {"astronomy", "physics", "stem"},
      {"business_ethics", "business", "other"},
      {"clinical_knowledge", "health", "other"},
      {"college_biology", "biology", "stem"},
      {"college_chemistry", "chemistry", "stem"},
      {"college_computer_science", "computer science", "stem"},
      {"college_mathematics", "math", "stem"},
      {"college_medicine", "health", "other"},
      {"college_physics", "physics", "stem"},
      {"computer_security", "computer science", "stem"},
      {"conceptual_physics", "physics", "stem"},
      {"econometrics", "economics", "social_sciences"},
      {"electrical_engineering", "engineering", "stem"},
      {"elementary_mathematics", "math", "stem"},
      {"formal_logic", "philosophy", "humanities"},
      {"global_facts", "other", "other"},
      {"high_school_biology", "biology", "stem"},
      {"high_school_chemistry", "chemistry", "stem"},
      {"high_school_computer_science", "computer science", "stem"},
      {"high_school_european_history", "history", "humanities"},
      {"high_school_geography", "geography", "social_sciences"},
      {"high_school_government_and_politics", "politics", "social_sciences"},
      {"high_school_macroeconomics", "economics", "social_sciences"},
      {"high_school_mathematics", "math", "stem"},
      {"high_school_microeconomics", "economics", "social_sciences"},
      {"high_school_physics", "physics", "stem"},
      {"high_school_psychology", "psychology", "social_sciences"},
      {"high_school_statistics", "math", "stem"},
      {"high_school_us_history", "history", "humanities"},
      {"high_school_world_history", "history", "humanities"},
      {"human_aging", "health", "other"},
      {"human_sexuality", "culture", "social_sciences"},
      {"international_law", "law", "humanities"},
      {"jurisprudence", "law", "humanities"},
      {"logical_fallacies", "philosophy", "humanities"},
      {"machine_learning", "computer science", "stem"},
      {"management", "business", "other"},
      {"marketing", "business", "other"},
      {"medical_genetics", "health", "other"},
      {"miscellaneous", "other", "other"},
      {"moral_disputes", "philosophy", "humanities"},
      {"moral_scenarios", "philosophy", "humanities"},
      {"nutrition", "health", "other"},
      {"philosophy", "philosophy", "humanities"},
      {"prehistory", "history", "humanities"},
      {"professional_accounting", "other", "other"},
      {"professional_law", "law", "humanities"},
      {"professional_medicine", "health", "other"},
      {"professional_psychology", "psychology", "social_sciences"},
      {"public_relations", "politics", "social_sciences"},
      {"security_studies", "politics", "social_sciences"},
      {"sociology", "culture", "social_sciences"},
      {"us_foreign_policy", "politics", "social_sciences"},
      {"virology", "health", "other"},
      {"world_religions", "philosophy", "humanities"},
  };
  return subjects;
}

namespace {

const char* kLetters[4] = {"A", "B", "C", "D"};

// The reference reads the CSVs with pandas.read_csv(header=None), which turns a cell that is
// exactly one of pandas' default NA strings into NaN, printed "nan" by str.format. In the bundled
// test set this hits 10 answer options that read "None" (college_computer_science,
// college_mathematics, college_physics, electrical_engineering), so the reference prompt shows
// e.g. "A. nan"; we reproduce that. ("None" joined the NA list in pandas 2.0; the reference's
// requirements leave pandas unpinned, so its 2024 environment has 2.x. pandas 1.x kept "None".) (pandas' other inference, numeric or boolean columns, changes
// no MMLU cell: no column of any dev or test file is all-numeric or all-boolean.)
std::string as_pandas_prints(const std::string& cell) {
  static const std::set<std::string> na = {"",     "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN",
                                           "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",   "NA",       "NULL",
                                           "NaN",  "None", "n/a",     "nan", "null"};
  return na.count(cell) ? "nan" : cell;
}

struct MmluRow {
  std::string question, choices[4];
  int answer;  // 0..3
};

std::vector<MmluRow> read_mmlu_csv(const std::string& root, const std::string& rel) {
  DataFile f = read_dataset_file(root, rel);
  std::vector<MmluRow> rows;
  for (const CsvRow& r : parse_csv(f)) {
    if (r.fields.size() != 6)
      fail(f.path, ":", r.line, ": ", r.fields.size(), " fields, expected 6 (question, A, B, C, D, answer)");
    MmluRow row;
    row.question = r.fields[0];
    for (int j = 0; j < 4; ++j) row.choices[j] = r.fields[j + 1];
    const std::string& a = r.fields[5];
    if (a.size() != 1 || a[0] < 'A' || a[0] > 'D') fail(f.path, ":", r.line, ": answer \"", a, "\" is not A-D");
    row.answer = a[0] - 'A';
    rows.push_back(std::move(row));
  }
  return rows;
}

// Python's str.strip(): ASCII whitespace from both ends.
std::string py_strip(const std::string& s) {
  const char* ws = " \t\n\r\v\f";
  const size_t b = s.find_first_not_of(ws);
  return b == std::string::npos ? "" : s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// format_example(): "{question}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:" (+ " {X}\n\n" for a shot).
// The paper's script prints cells as pandas reads them; lm-eval strips the question and keeps
// every cell as written (its dataset has no NA conversion). The shot layout is the same in both:
// lm-eval joins "question Answer: X" examples with "\n\n".
std::string format_example(const MmluRow& r, bool with_answer, bool lm_eval) {
  std::string s = lm_eval ? py_strip(r.question) : as_pandas_prints(r.question);
  for (int j = 0; j < 4; ++j)
    s += std::string("\n") + kLetters[j] + ". " + (lm_eval ? r.choices[j] : as_pandas_prints(r.choices[j]));
  s += "\nAnswer:";
  if (with_answer) s += std::string(" ") + kLetters[r.answer] + "\n\n";
  return s;
}

// gen_prompt()'s header. format_subject() joins the words with a leading " " each, so the
// reference prompt has TWO spaces after "about": "… about  abstract algebra.\n\n". Kept verbatim.
// lm-eval's description has one space: "… about abstract algebra.\n\n".
std::string prompt_header(const std::string& subject, bool lm_eval) {
  std::string words;
  size_t pos = 0;
  while (true) {
    size_t us = subject.find('_', pos);
    if (!lm_eval || !words.empty()) words += ' ';
    words += subject.substr(pos, us == std::string::npos ? std::string::npos : us - pos);
    if (us == std::string::npos) break;
    pos = us + 1;
  }
  return "The following are multiple choice questions (with answers) about " + words + ".\n\n";
}

std::vector<const MmluSubject*> selected_subjects(const std::vector<std::string>& wanted) {
  std::vector<const MmluSubject*> out;
  std::set<std::string> want(wanted.begin(), wanted.end());
  for (const MmluSubject& s : mmlu_subjects())
    if (wanted.empty() || want.erase(s.name)) out.push_back(&s);
  if (!want.empty()) {
    std::string valid;
    for (const MmluSubject& s : mmlu_subjects()) valid.append(valid.empty() ? "" : ", ").append(s.name);
    fail("unknown MMLU subject \"", *want.begin(), "\"; valid subjects: ", valid);
  }
  return out;  // table order, whatever order they were asked in
}

}  // namespace

std::vector<TaskDoc> load_mmlu(const TaskOptions& o, const std::vector<std::string>& /*files: the checksum list*/) {
  if (o.num_fewshot < 0) fail("mmlu: num_fewshot must be >= 0, got ", o.num_fewshot);
  if (o.max_ctx_tokens > 0 && !o.count_tokens)
    fail("mmlu: max_ctx_tokens is set but no token counter was given (TaskOptions::count_tokens)");
  if (o.mmlu_format != "paper" && o.mmlu_format != "lm-eval")
    fail("mmlu: format '", o.mmlu_format, "' is not paper or lm-eval");
  const bool lm_eval = o.mmlu_format == "lm-eval";
  std::vector<TaskDoc> docs;
  for (const MmluSubject* subject : selected_subjects(o.subjects)) {
    const std::string name = subject->name;
    // dev_df[:num_fewshot]: the first k dev rows are the shots, in file order.
    std::vector<MmluRow> dev = read_mmlu_csv(o.data_root, "datasets/mmlu/dev/" + name + "_dev.csv");
    std::vector<MmluRow> test = read_mmlu_csv(o.data_root, "datasets/mmlu/test/" + name + "_test.csv");
    const std::string header = prompt_header(name, lm_eval);
    std::vector<std::string> shots;
    for (size_t i = 0; i < dev.size() && static_cast<int>(i) < o.num_fewshot; ++i)
      shots.push_back(format_example(dev[i], true, lm_eval));

    size_t n = test.size();
    if (o.limit > 0 && static_cast<int64_t>(n) > o.limit) n = static_cast<size_t>(o.limit);
    for (size_t i = 0; i < n; ++i) {
      const std::string end = format_example(test[i], false, lm_eval);
      auto prompt_with = [&](size_t k) {
        std::string p = header;
        for (size_t s = 0; s < k; ++s) p += shots[s];
        return p + end;
      };
      // The reference tokenizes with <bos> and drops the last shot while the input is longer
      // than 2048 tokens. It would go on to k = -1 (meaning "all dev rows") if even 0 shots did
      // not fit; we stop at 0 shots and leave the rest to the scorer's left truncation.
      size_t k = shots.size();
      std::string prompt = prompt_with(k);
      if (o.max_ctx_tokens > 0)
        while (k > 0 && o.count_tokens(prompt) + 1 > o.max_ctx_tokens) prompt = prompt_with(--k);
      TaskDoc d;
      for (const char* letter : kLetters) d.options.push_back({prompt, std::string(" ") + letter});
      d.gold = test[i].answer;
      d.subject = name;
      docs.push_back(std::move(d));
    }
  }
  return docs;
}

}  // namespace ikv::eval
