#include "exp/dist_messages.h"

#include <cstring>

#include "io/error.h"
#include "io/sha256.h"

namespace ikv::exp {
using nlohmann::json;

namespace {

std::string hex_of_double(double v) { return hex_of_doubles({v}); }
double double_of_hex(const std::string& s) {
  std::vector<double> v = doubles_of_hex(s);
  if (v.size() != 1) fail("message: \"", s, "\" is not one double");
  return v[0];
}

json artifact_json(const ArtifactRecord& a) {
  return {{"key", a.key}, {"kind", a.kind}, {"path", a.path}, {"sha256", a.sha256}, {"created_at", a.created_at}};
}
ArtifactRecord artifact_of(const json& j) {
  return {j.at("key").get<std::string>(), j.at("kind").get<std::string>(), j.at("path").get<std::string>(),
          j.at("sha256").get<std::string>(), j.at("created_at").get<std::string>()};
}
json artifacts_json(const std::vector<ArtifactRecord>& v) {
  json a = json::array();
  for (const auto& x : v) a.push_back(artifact_json(x));
  return a;
}
std::vector<ArtifactRecord> artifacts_of(const json& j) {
  std::vector<ArtifactRecord> v;
  for (const auto& x : j) v.push_back(artifact_of(x));
  return v;
}

json outcomes_json(const std::vector<ItemOutcomes>& v) {
  json a = json::array();
  for (const auto& o : v) a.push_back({{"metric", o.metric}, {"values", hex_of_doubles(o.values)}});
  return a;
}
std::vector<ItemOutcomes> outcomes_of(const json& j) {
  std::vector<ItemOutcomes> v;
  for (const auto& o : j) v.push_back({o.at("metric").get<std::string>(), doubles_of_hex(o.at("values"))});
  return v;
}

json record_json(const CellRecord& r) {
  json metrics = json::array();
  for (const Metric& m : r.metrics)
    metrics.push_back({{"name", m.name}, {"value", hex_of_double(m.value)}, {"std_err", hex_of_double(m.std_err)},
                       {"n", m.n}});
  return {{"metrics", metrics}, {"outcomes", outcomes_json(r.outcomes)}};
}
CellRecord record_of(const json& j) {
  CellRecord r;
  for (const auto& m : j.at("metrics"))
    r.metrics.push_back({m.at("name").get<std::string>(), double_of_hex(m.at("value")),
                         double_of_hex(m.at("std_err")), m.at("n").get<int64_t>()});
  r.outcomes = outcomes_of(j.at("outcomes"));
  return r;
}

json part_json(const CellPart& p) {
  return {{"part", p.part},
          {"parts", p.parts},
          {"items", p.items},
          {"begin", p.begin},
          {"end", p.end},
          {"tokens_scored", p.tokens_scored},
          {"values", outcomes_json(p.values)},
          {"subjects", p.subjects},
          {"extra", outcomes_json(p.extra)}};
}
CellPart part_of(const json& j) {
  CellPart p;
  p.part = j.at("part").get<int>();
  p.parts = j.at("parts").get<int>();
  p.items = j.at("items").get<int64_t>();
  p.begin = j.at("begin").get<int64_t>();
  p.end = j.at("end").get<int64_t>();
  p.tokens_scored = j.at("tokens_scored").get<int64_t>();
  p.values = outcomes_of(j.at("values"));
  p.subjects = j.at("subjects").get<std::vector<std::string>>();
  p.extra = outcomes_of(j.at("extra"));
  return p;
}

// Runs a decoder and turns nlohmann's exceptions into one-line ikv errors.
template <typename F>
auto decoded(const char* what, F&& f) {
  try {
    return f();
  } catch (const json::exception& e) {
    fail("malformed ", what, " message: ", e.what());
  }
}

}  // namespace

std::string hex_of_doubles(const std::vector<double>& values) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(values.size() * 16);
  for (double v : values) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    for (int shift = 60; shift >= 0; shift -= 4) s.push_back(digits[(bits >> shift) & 0xf]);
  }
  return s;
}

std::vector<double> doubles_of_hex(const std::string& hex) {
  if (hex.size() % 16 != 0) fail("message: ", hex.size(), " hex digits are not a whole number of doubles");
  std::vector<double> out(hex.size() / 16);
  for (size_t i = 0; i < out.size(); ++i) {
    uint64_t bits = 0;
    for (size_t k = 0; k < 16; ++k) {
      const char c = hex[i * 16 + k];
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) fail("message: '", c, "' is not a hex digit");
      bits = bits << 4 | static_cast<uint64_t>(d);
    }
    std::memcpy(&out[i], &bits, sizeof bits);
  }
  return out;
}

json to_json(const WorkUnit& u) {
  return {{"type", "work"},    {"cell", u.cell},
          {"key", u.key},      {"part", u.part},
          {"parts", u.parts},  {"artifacts", artifacts_json(u.artifacts)},
          {"attempt", u.attempt}};
}

json to_json(const UnitResult& r) {
  json j = {{"type", "result"}, {"cell", r.cell},   {"key", r.key},     {"part", r.part},
            {"parts", r.parts}, {"ok", r.ok},       {"error", r.error}, {"seconds", hex_of_double(r.seconds)},
            {"new_artifacts", artifacts_json(r.new_artifacts)}};
  if (r.ok) j[r.parts > 1 ? "part_result" : "record"] = r.parts > 1 ? part_json(r.part_result) : record_json(r.record);
  return j;
}

WorkUnit work_unit_of(const json& j) {
  return decoded("work", [&] {
    WorkUnit u;
    u.cell = j.at("cell").get<size_t>();
    u.key = j.at("key").get<std::string>();
    u.part = j.at("part").get<int>();
    u.parts = j.at("parts").get<int>();
    u.artifacts = artifacts_of(j.at("artifacts"));
    u.attempt = j.at("attempt").get<int>();
    return u;
  });
}

UnitResult unit_result_of(const json& j) {
  return decoded("result", [&] {
    UnitResult r;
    r.cell = j.at("cell").get<size_t>();
    r.key = j.at("key").get<std::string>();
    r.part = j.at("part").get<int>();
    r.parts = j.at("parts").get<int>();
    r.ok = j.at("ok").get<bool>();
    r.error = j.at("error").get<std::string>();
    r.seconds = double_of_hex(j.at("seconds"));
    r.new_artifacts = artifacts_of(j.at("new_artifacts"));
    if (r.ok && r.parts > 1) r.part_result = part_of(j.at("part_result"));
    if (r.ok && r.parts == 1) r.record = record_of(j.at("record"));
    return r;
  });
}

std::string plan_digest(const Plan& plan) {
  std::string keys;
  for (const Cell& c : plan.cells) keys += c.key + "\n";
  return io::sha256_hex(keys);
}

}  // namespace ikv::exp
