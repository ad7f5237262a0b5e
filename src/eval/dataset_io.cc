#include "eval/dataset_io.h"

#include "io/data_root.h"
#include "io/error.h"
#include "io/mapped_file.h"

namespace ikv::eval {

DataFile read_dataset_file(const std::string& data_root, const std::string& rel) {
  // io::data_file fails with "<path>: missing (not in the data root): get the ikv-data bundle …
  // pass --data-root DIR or set IKV_DATA".
  DataFile f;
  f.path = io::data_file(data_root, rel);
  io::verify_data_file(data_root, f.path);
  f.text = io::read_text_file(f.path);
  return f;
}

std::vector<TextLine> split_lines(const std::string& text) {
  std::vector<TextLine> lines;
  size_t pos = 0;
  int64_t n = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    size_t stop = (end > pos && text[end - 1] == '\r') ? end - 1 : end;
    lines.push_back({text.substr(pos, stop - pos), ++n});
    pos = end + 1;
  }
  return lines;
}

std::vector<JsonLine> parse_jsonl(const DataFile& file) {
  std::vector<JsonLine> rows;
  for (TextLine& l : split_lines(file.text)) {
    if (l.text.find_first_not_of(" \t") == std::string::npos) continue;
    nlohmann::json v = nlohmann::json::parse(l.text, nullptr, /*allow_exceptions=*/false);
    if (v.is_discarded()) fail(file.path, ":", l.line, ": not valid JSON");
    if (!v.is_object()) fail(file.path, ":", l.line, ": expected a JSON object");
    rows.push_back({std::move(v), l.line});
  }
  return rows;
}

std::string json_string(const JsonLine& row, const char* key, const std::string& path) {
  auto it = row.value.find(key);
  if (it == row.value.end()) fail(path, ":", row.line, ": missing field \"", key, "\"");
  if (!it->is_string()) fail(path, ":", row.line, ": field \"", key, "\" is not a string");
  return it->get<std::string>();
}

std::vector<CsvRow> parse_csv(const DataFile& file) {
  const std::string& s = file.text;
  std::vector<CsvRow> rows;
  CsvRow row;
  std::string field;
  int64_t line = 1;
  bool in_quotes = false, row_has_content = false;
  int64_t quote_line = 0;
  auto end_field = [&] {
    row.fields.push_back(std::move(field));
    field.clear();
  };
  auto end_row = [&] {
    if (row_has_content) {
      end_field();
      rows.push_back(std::move(row));
    }
    row = CsvRow{};
    field.clear();
    row_has_content = false;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (!row_has_content) row.line = line;
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < s.size() && s[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          in_quotes = false;  // text after a closing quote is kept literally, as pandas does
        }
      } else {
        if (c == '\n') ++line;
        field += c;
      }
      continue;
    }
    if (c == '\n' || (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n')) {
      if (c == '\r') ++i;
      end_row();
      ++line;
      continue;
    }
    row_has_content = true;
    if (c == ',') {
      end_field();
    } else if (c == '"' && field.empty()) {
      in_quotes = true;
      quote_line = line;
    } else {
      field += c;
    }
  }
  if (in_quotes) fail(file.path, ":", quote_line, ": quoted field is never closed");
  end_row();
  return rows;
}

int64_t utf8_length(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace ikv::eval
