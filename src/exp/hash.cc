#include "exp/hash.h"

#include <cmath>

#include "io/error.h"

namespace ikv::exp {
namespace {

void check_finite(const nlohmann::json& v, const std::string& path) {
  if (v.is_number_float() && !std::isfinite(v.get<double>()))
    fail("content key: non-finite number at ", path);
  if (v.is_object())
    for (const auto& [k, item] : v.items()) check_finite(item, path + "/" + k);
  if (v.is_array())
    for (size_t i = 0; i < v.size(); ++i) check_finite(v[i], path + "/" + std::to_string(i));
}

}  // namespace

std::string canonical_json(const nlohmann::json& value) {
  check_finite(value, "");
  return value.dump();
}

std::string content_key(const nlohmann::json& value) { return io::sha256_hex(canonical_json(value)); }

}  // namespace ikv::exp
