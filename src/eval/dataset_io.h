// Reading the evaluation datasets of the ikv-data bundle: whole files, JSON lines, CSV as pandas
// reads it. Every error names the file and, where there is one, the line.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ikv::eval {

// Resolves `rel` (e.g. "datasets/piqa/valid.jsonl") under the data root, checks it against the
// bundle's SHA256SUMS when listed there, and returns its bytes. A missing file is an Error that
// names the path and says it comes from the ikv-data bundle (IKV_DATA / --data-root).
struct DataFile {
  std::string path;
  std::string text;
};
DataFile read_dataset_file(const std::string& data_root, const std::string& rel);

// Lines without their '\n' (a final line without '\n' still counts); `line` is 1-based.
struct TextLine {
  std::string text;
  int64_t line;
};
std::vector<TextLine> split_lines(const std::string& text);

// One JSON object per non-blank line.
struct JsonLine {
  nlohmann::json value;
  int64_t line;
};
std::vector<JsonLine> parse_jsonl(const DataFile& file);
// value[key] as a string; absent or not a string is an Error naming path:line and the key.
std::string json_string(const JsonLine& row, const char* key, const std::string& path);

// CSV the way pandas.read_csv(header=None) reads MMLU: ',' separators, '"' quoting with "" for a
// quote, newlines allowed inside quotes, blank lines skipped, fields kept verbatim (no trimming).
struct CsvRow {
  std::vector<std::string> fields;
  int64_t line;  // line where the row starts
};
std::vector<CsvRow> parse_csv(const DataFile& file);

// Python's len() of a UTF-8 string: the number of code points (lm-eval's acc_norm divisor).
int64_t utf8_length(const std::string& s);

}  // namespace ikv::eval
