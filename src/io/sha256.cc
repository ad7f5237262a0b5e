#include "io/sha256.h"

#include <openssl/evp.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "io/error.h"
#include "io/mapped_file.h"

namespace ikv::io {
namespace {

std::string to_hex(const unsigned char* d, unsigned n) {
  static const char* k = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (unsigned i = 0; i < n; ++i) s[2 * i] = k[d[i] >> 4], s[2 * i + 1] = k[d[i] & 15];
  return s;
}

std::string cache_file() {
  if (const char* d = std::getenv("IKV_CACHE_DIR")) return std::string(d) + "/sha256-cache.tsv";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.cache/ikv/sha256-cache.tsv";
}

}  // namespace

std::string sha256_hex(const void* data, size_t n) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (EVP_Digest(data, n, md, &len, EVP_sha256(), nullptr) != 1) fail("sha256: OpenSSL EVP_Digest failed");
  return to_hex(md, len);
}

std::string sha256_hex(const std::string& s) { return sha256_hex(s.data(), s.size()); }

// Read in 4 MB pieces, not mapped: hashing a 5 GB shard through a mapping would add it to the
// process's peak resident set.
std::string file_sha256(const std::string& path) {
  check_regular_file(path, "file");
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, ": cannot open (", std::strerror(errno), ")");
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    ::close(fd);
    fail("sha256: OpenSSL EVP_DigestInit failed");
  }
  std::vector<unsigned char> buf(size_t{4} << 20);
  for (;;) {
    const ssize_t got = ::read(fd, buf.data(), buf.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int err = errno;
      ::close(fd);
      fail(path, ": read error (", std::strerror(err), ")");
    }
    if (got == 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(got));
  }
  ::close(fd);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) fail("sha256: OpenSSL EVP_DigestFinal failed");
  return to_hex(md, len);
}

std::string file_sha256_cached(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path, ": missing file");
  std::string abs = std::filesystem::absolute(path).lexically_normal().string();
  std::ostringstream id;
  id << abs << '\t' << st.st_size << '\t' << st.st_mtim.tv_sec << '.' << st.st_mtim.tv_nsec;
  const std::string key = id.str();

  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  const std::string cache = cache_file();
  {
    std::ifstream in(cache);
    std::string line;
    while (std::getline(in, line)) {
      auto tab = line.rfind('\t');
      if (tab != std::string::npos && line.compare(0, tab, key) == 0 && tab == key.size())
        return line.substr(tab + 1);
    }
  }
  std::string digest = file_sha256(path);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(cache).parent_path(), ec);
  // Appending one short line is atomic enough for a cache: a torn line simply never matches.
  std::ofstream out(cache, std::ios::app);
  if (out) out << key << '\t' << digest << '\n';
  return digest;
}

}  // namespace ikv::io
