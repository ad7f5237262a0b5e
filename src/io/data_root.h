// The data root: where models, datasets and golden outputs live (never copied into the repo).
// Resolution order: --data-root flag, $IKV_DATA, ../shared/ikv-data from the working directory,
// then from the source tree. Files are checked against the SHA256SUMS lists shipped there.
#pragma once
#include <string>

namespace ikv::io {

// Returns the data root as an absolute path, or throws Error explaining how to provide one.
std::string resolve_data_root(const std::string& flag = "");
// Like resolve_data_root but returns "" when none is found (tests skip on that).
std::string find_data_root(const std::string& flag = "");

// Resolves `name` (absolute, relative to the working directory, or relative to the data root) to
// an existing path; a missing file is an Error naming where it was looked for and where to get it.
std::string data_file(const std::string& root, const std::string& name);

// Verifies `path` against the nearest SHA256SUMS (its folder or an ancestor up to the root) when
// one lists it; an altered file is an Error naming it. Files no list mentions are accepted.
void verify_data_file(const std::string& root, const std::string& path);

}  // namespace ikv::io
