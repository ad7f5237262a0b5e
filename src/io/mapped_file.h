// A read-only memory map of a whole file (RAII). Checkpoints are mapped, never read into a copy.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
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
  // Takes the pages wholly inside [p, p + n) out of this process's resident set (MADV_DONTNEED).
  // The mapping stays valid: the file's pages remain in the page cache, and reading the range again
  // faults them back in. A range outside the mapping is ignored.
  void release(const void* p, size_t n) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// An owner for bytes [p, p + n) of a shared mapping: keeps the file mapped while any copy lives,
// and releases the range's pages from the resident set when the last one goes. Weights read in
// place from a checkpoint hold one each, so replacing a weight (quantizing it, converting it)
// returns its memory.
std::shared_ptr<const void> hold_range(std::shared_ptr<const MappedFile> file, const void* p, size_t n);
// Takes the pages of a hold_range owner's range out of the resident set now, keeping the view
// valid (they fault back in when read): a pass that is done with a weight for a while (layer-major
// evaluation) returns its memory. Any other owner (bytes in ordinary memory) is left alone.
void release_held(const std::shared_ptr<const void>& owner);
// The size of a hold_range owner's range; 0 for any other owner.
size_t held_bytes(const std::shared_ptr<const void>& owner);

// Error "PATH: cannot open WHAT (...)" / "PATH: WHAT is a directory, not a file" / "... is not a
// regular file" unless path names a regular file. FIFOs and devices are refused before they are
// opened: a FIFO blocks open(2) forever and /dev/zero never ends.
void check_regular_file(const std::string& path, const char* what);
// Reads a whole regular file of at most max_bytes into a string; throws Error naming the path.
std::string read_text_file(const std::string& path, size_t max_bytes = size_t{1} << 30);
// read_text_file for text that is evaluated or tokenized: an empty (or all-blank) file, a NUL byte
// or ill-formed UTF-8 (binary data) is an Error naming the file and the byte offset.
std::string read_utf8_text(const std::string& path);
// Writes via a temporary file and rename(2), so a crash never leaves a half-written file.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace ikv::io
