#include "exp/schema_check.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "io/error.h"

namespace ikv::exp {

int levenshtein(std::string_view a, std::string_view b) {
  std::vector<int> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    int diagonal = row[0];
    row[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      const int above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& options) {
  const std::string* best = nullptr;
  int best_distance = 3;
  for (const auto& option : options) {
    const int d = levenshtein(word, option);
    if (d < best_distance) best_distance = d, best = &option;
  }
  return best ? " (did you mean \"" + *best + "\"?)" : "";
}

namespace {
std::string number_text(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
}  // namespace

Rule between(double lo, double hi) {
  return [=](double v) {
    return v >= lo && v <= hi ? "" : "between " + number_text(lo) + " and " + number_text(hi);
  };
}

Rule at_least(double lo) {
  return [=](double v) { return v >= lo ? "" : "at least " + number_text(lo); };
}

void SchemaChecker::problem(const YamlNode& at, const std::string& message) {
  problems_.push_back(at.where() + ": " + message);
}

void SchemaChecker::throw_if_any() const {
  if (problems_.empty()) return;
  std::string all = problems_[0];
  for (size_t i = 1; i < problems_.size(); ++i) all += "; " + problems_[i];
  throw Error(all);
}

std::string SchemaChecker::shown(const YamlNode& n) {
  switch (n.kind) {
    case YamlNode::Kind::Scalar: return "'" + n.scalar + "'";
    case YamlNode::Kind::Sequence: return "a list";
    case YamlNode::Kind::Map: return "a map";
    case YamlNode::Kind::Null: break;
  }
  return "nothing";
}

bool SchemaChecker::check_keys(const YamlNode& map, const std::vector<std::string>& valid,
                               const std::string& what) {
  if (map.kind != YamlNode::Kind::Map) {
    problem(map, what + ": expected a map, got " + shown(map));
    return false;
  }
  for (const auto& [key, value] : map.entries) {
    if (std::find(valid.begin(), valid.end(), key.scalar) != valid.end()) continue;
    std::string hint = did_you_mean(key.scalar, valid);
    if (hint.empty()) {
      hint = "; valid keys:";
      for (const auto& v : valid) hint += " " + v;
    }
    problem(key, "unknown key \"" + key.scalar + "\" in " + what + hint);
  }
  return true;
}

const YamlNode* SchemaChecker::field(const YamlNode& map, std::string_view key, bool required) {
  const YamlNode* n = map.find(key);
  if (!n && required) problem(map, "missing key \"" + std::string(key) + "\"");
  return n;
}

std::optional<int64_t> SchemaChecker::integer(const YamlNode& n) {
  if (n.kind == YamlNode::Kind::Scalar) {
    const std::string& s = n.scalar;
    const char* begin = s.data() + (s.size() > 1 && s[0] == '+' ? 1 : 0);
    int64_t v = 0;
    auto [end, ec] = std::from_chars(begin, s.data() + s.size(), v);
    if (ec == std::errc() && end == s.data() + s.size()) return v;
  }
  problem(n, "expected an integer, got " + shown(n));
  return std::nullopt;
}

std::optional<double> SchemaChecker::number(const YamlNode& n) {
  if (n.kind == YamlNode::Kind::Scalar && !n.scalar.empty()) {
    char* end = nullptr;
    const double v = std::strtod(n.scalar.c_str(), &end);
    if (end == n.scalar.c_str() + n.scalar.size() && std::isfinite(v)) return v;
  }
  problem(n, "expected a number, got " + shown(n));
  return std::nullopt;
}

std::optional<bool> SchemaChecker::boolean(const YamlNode& n) {
  if (n.kind == YamlNode::Kind::Scalar) {
    std::string s = n.scalar;
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    if (s == "true" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "no" || s == "off") return false;
  }
  problem(n, "expected true or false, got " + shown(n));
  return std::nullopt;
}

std::optional<std::string> SchemaChecker::string(const YamlNode& n) {
  if (n.kind == YamlNode::Kind::Scalar && !n.scalar.empty()) return n.scalar;
  problem(n, "expected a string, got " + shown(n));
  return std::nullopt;
}

std::optional<std::vector<std::string>> SchemaChecker::strings(const YamlNode& n) {
  if (n.kind == YamlNode::Kind::Scalar) return std::vector<std::string>{n.scalar};
  if (n.kind != YamlNode::Kind::Sequence) {
    problem(n, "expected a list of strings, got " + shown(n));
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (const auto& item : n.items)
    if (auto s = string(item)) out.push_back(*s);
  if (out.size() != n.items.size()) return std::nullopt;
  return out;
}

bool SchemaChecker::passes(const YamlNode& n, const std::string& name, double value, const Rule& rule) {
  if (!rule) return true;
  const std::string expected = rule(value);
  if (expected.empty()) return true;
  problem(n, name + " must be " + expected + ", got " + number_text(value));
  return false;
}

void SchemaChecker::read(const YamlNode& map, std::string_view key, int64_t& out, const Rule& rule) {
  const YamlNode* n = field(map, key);
  if (!n) return;
  auto v = integer(*n);
  if (v && passes(*n, std::string(key), static_cast<double>(*v), rule)) out = *v;
}

void SchemaChecker::read(const YamlNode& map, std::string_view key, int& out, const Rule& rule) {
  int64_t wide = out;
  const YamlNode* n = field(map, key);
  read(map, key, wide, rule);
  if (n && (wide < INT_MIN || wide > INT_MAX)) {
    problem(*n, std::string(key) + " is out of range, got " + n->scalar);
    return;
  }
  out = static_cast<int>(wide);
}

void SchemaChecker::read(const YamlNode& map, std::string_view key, double& out, const Rule& rule) {
  const YamlNode* n = field(map, key);
  if (!n) return;
  auto v = number(*n);
  if (v && passes(*n, std::string(key), *v, rule)) out = *v;
}

void SchemaChecker::read(const YamlNode& map, std::string_view key, bool& out) {
  if (const YamlNode* n = field(map, key))
    if (auto v = boolean(*n)) out = *v;
}

void SchemaChecker::read(const YamlNode& map, std::string_view key, std::string& out) {
  if (const YamlNode* n = field(map, key))
    if (auto v = string(*n)) out = *v;
}

}  // namespace ikv::exp
