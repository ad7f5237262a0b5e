// A read-only memory map of a whole file (RAII). Checkpoints are mapped, never read into a copy.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ikv::io {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws Error naming the path
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole (small) file into a string; throws Error naming the path if it cannot.
std::string read_text_file(const std::string& path);
// Writes via a temporary file and rename(2), so a crash never leaves a half-written file.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace ikv::io
