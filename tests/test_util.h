// Shared helpers for the doctest suites.
#pragma once
#include <doctest/doctest.h>

#include <string>

#include "io/data_root.h"

namespace ikv::test {

// The data root, or "" (and a doctest MESSAGE) when the ikv-data bundle is absent, so data-driven
// tests skip instead of failing on a machine without it.
inline std::string data_root() {
  static const std::string root = io::find_data_root();
  if (root.empty()) MESSAGE("ikv-data not found (set IKV_DATA); skipping data-driven checks");
  return root;
}

inline std::string model_dir(const std::string& name) { return data_root() + "/models/" + name; }

}  // namespace ikv::test
