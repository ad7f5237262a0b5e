// Typed reads from a YamlNode that collect problems ("FILE:LINE:COLUMN: message") instead of
// stopping at the first, so one run of `ikv-eval run` reports everything wrong with a config.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "exp/yaml_tree.h"

namespace ikv::exp {

// Edit distance (insert, delete, substitute) between two short strings.
int levenshtein(std::string_view a, std::string_view b);
// ` (did you mean "x"?)` for the closest option within distance 2, else "".
std::string did_you_mean(std::string_view word, const std::vector<std::string>& options);

// "" when a value is acceptable, else what was expected ("between 2 and 8").
using Rule = std::function<std::string(double)>;
Rule between(double lo, double hi);
Rule at_least(double lo);

class SchemaChecker {
 public:
  void problem(const YamlNode& at, const std::string& message);
  const std::vector<std::string>& problems() const { return problems_; }
  // Throws ikv::Error with every problem joined by "; " (nothing when there is none).
  void throw_if_any() const;

  // Unknown keys of `map` (with a did-you-mean against `valid`); false when `map` is no map.
  bool check_keys(const YamlNode& map, const std::vector<std::string>& valid, const std::string& what);
  // The value under `key` (nullptr when absent); `required` makes absence a problem.
  const YamlNode* field(const YamlNode& map, std::string_view key, bool required = false);

  std::optional<int64_t> integer(const YamlNode& n);
  std::optional<double> number(const YamlNode& n);
  std::optional<bool> boolean(const YamlNode& n);
  std::optional<std::string> string(const YamlNode& n);  // a non-empty scalar
  // A list of strings; a single scalar counts as a one-element list.
  std::optional<std::vector<std::string>> strings(const YamlNode& n);
  // A value that must pass `rule`; the message names `name`: "wbits must be between 2 and 8, got 9".
  bool passes(const YamlNode& n, const std::string& name, double value, const Rule& rule);

  // Reads map[key] into `out` when present (and valid); out keeps its default otherwise.
  void read(const YamlNode& map, std::string_view key, int& out, const Rule& rule = {});
  void read(const YamlNode& map, std::string_view key, int64_t& out, const Rule& rule = {});
  void read(const YamlNode& map, std::string_view key, double& out, const Rule& rule = {});
  void read(const YamlNode& map, std::string_view key, bool& out);
  void read(const YamlNode& map, std::string_view key, std::string& out);

  static std::string shown(const YamlNode& n);  // 'abc', a list, a map, nothing

 private:
  std::vector<std::string> problems_;
};

}  // namespace ikv::exp
