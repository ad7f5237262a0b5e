// JSON text from a file or a buffer: one parse whose failure is the one-line Error
// "PATH: bad JSON (parser message)".
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "io/error.h"

namespace ikv::io {

inline nlohmann::json parse_json(const std::string& text, const std::string& path) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": bad JSON (", e.what(), ")");
  }
}

}  // namespace ikv::io
