#include "io/data_root.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/error.h"
#include "io/sha256.h"

namespace fs = std::filesystem;

namespace ikv::io {
namespace {

const char* kWhere =
    "get the ikv-data bundle (models, datasets, golden; see data/MANIFEST.md) and pass --data-root DIR "
    "or set IKV_DATA";

bool looks_like_data_root(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p / "models", ec) || fs::is_directory(p / "datasets", ec);
}

}  // namespace

std::string find_data_root(const std::string& flag) {
  if (!flag.empty()) return fs::absolute(flag).lexically_normal().string();
  if (const char* env = std::getenv("IKV_DATA"); env && *env) return fs::absolute(env).lexically_normal().string();
  for (fs::path base : {fs::current_path(), fs::path(IKV_SOURCE_DIR)}) {
    fs::path p = base / ".." / "shared" / "ikv-data";
    if (looks_like_data_root(p)) return fs::absolute(p).lexically_normal().string();
  }
  return "";
}

std::string resolve_data_root(const std::string& flag) {
  std::string root = find_data_root(flag);
  if (root.empty()) fail("no data root found (looked for ../shared/ikv-data): ", kWhere);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) fail(root, ": data root is not a directory: ", kWhere);
  return root;
}

std::string data_file(const std::string& root, const std::string& name) {
  std::error_code ec;
  fs::path p(name);
  if (p.is_absolute() || fs::exists(p, ec)) {
    if (!fs::exists(p, ec)) fail(name, ": missing file");
    return fs::absolute(p).lexically_normal().string();
  }
  if (!root.empty()) {
    fs::path q = fs::path(root) / name;
    if (fs::exists(q, ec)) return q.lexically_normal().string();
    fail(q.lexically_normal().string(), ": missing (not in the data root): ", kWhere);
  }
  fail(name, ": missing file (and no data root): ", kWhere);
}

void verify_data_file(const std::string& root, const std::string& path) {
  if (root.empty()) return;
  fs::path file = fs::absolute(path).lexically_normal();
  fs::path top = fs::absolute(root).lexically_normal();
  // Files outside the data root (user-supplied) have no list to be checked against.
  if (file.lexically_relative(top).string().rfind("..", 0) == 0) return;
  for (fs::path dir = file.parent_path();; dir = dir.parent_path()) {
    fs::path sums = dir / "SHA256SUMS";
    std::error_code ec;
    if (fs::exists(sums, ec)) {
      std::string rel = file.lexically_relative(dir).string();
      std::ifstream in(sums);
      std::string line;
      while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string digest, name;
        ls >> digest >> name;
        if (name.rfind("./", 0) == 0) name = name.substr(2);
        if (!name.empty() && name[0] == '*') name = name.substr(1);
        if (name != rel) continue;
        std::string actual = file_sha256_cached(file.string());
        if (actual != digest)
          fail(file.string(), ": sha256 ", actual.substr(0, 12), "… does not match ", sums.string(), " (",
               digest.substr(0, 12), "…): the file is altered or corrupt; ", kWhere);
        return;
      }
    }
    if (dir == top || dir == dir.parent_path()) return;  // searched up to the data root
  }
}

}  // namespace ikv::io
