// Content keys for results and artifacts: the sha256 (io/sha256.h, the one hashing routine of the
// project) of a canonical JSON text. nlohmann::json keeps object keys sorted and dump() without
// indentation is a fixed function of the value, so equal settings give equal keys on every run
// and machine; numbers print in shortest round-trip form.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "io/sha256.h"

namespace ikv::exp {

// The canonical text; a NaN or infinity anywhere is an Error (JSON would print it as null and
// two different settings would share a key).
std::string canonical_json(const nlohmann::json& value);
// sha256 hex (64 digits) of canonical_json(value).
std::string content_key(const nlohmann::json& value);

}  // namespace ikv::exp
