// sha256 of bytes and files (OpenSSL EVP). File digests are cached by (path, size, mtime) in
// $IKV_CACHE_DIR (default ~/.cache/ikv) so checking a multi-GB checkpoint costs once.
#pragma once
#include <cstddef>
#include <string>

namespace ikv::io {

std::string sha256_hex(const void* data, size_t n);
std::string sha256_hex(const std::string& s);
std::string file_sha256(const std::string& path);         // always reads the file
std::string file_sha256_cached(const std::string& path);  // uses the cache when size and mtime match

}  // namespace ikv::io
