#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <utility>

#include "io/error.h"
#include "io/text.h"

namespace ikv::io {

void check_regular_file(const std::string& path, const char* what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path, ": cannot open ", what, " (", std::strerror(errno), ")");
  if (S_ISDIR(st.st_mode)) fail(path, ": ", what, " is a directory, not a file");
  if (!S_ISREG(st.st_mode)) fail(path, ": ", what, " is not a regular file");
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  check_regular_file(path, "file");  // before open(2): opening a FIFO would block forever
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, ": cannot open (", std::strerror(errno), ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail(path, ": mmap failed (", std::strerror(errno), ")");
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

void MappedFile::release(const void* p, size_t n) const {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(data_), hi = lo + size_;
  uintptr_t b = reinterpret_cast<uintptr_t>(p), e = b + n;
  if (!data_ || b < lo || e > hi) return;
  b = (b + page - 1) / page * page;  // pages shared with a neighbouring tensor stay
  e = e / page * page;
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

namespace {

// The deleter of a hold_range owner: found again by std::get_deleter in release_held.
struct ReleaseRange {
  std::shared_ptr<const MappedFile> file;
  const void* p;
  size_t n;
  void operator()(const void*) const { file->release(p, n); }
};

}  // namespace

std::shared_ptr<const void> hold_range(std::shared_ptr<const MappedFile> file, const void* p, size_t n) {
  return std::shared_ptr<const void>(p, ReleaseRange{std::move(file), p, n});
}

void release_held(const std::shared_ptr<const void>& owner) {
  if (const ReleaseRange* r = std::get_deleter<ReleaseRange>(owner)) r->file->release(r->p, r->n);
}

size_t held_bytes(const std::shared_ptr<const void>& owner) {
  const ReleaseRange* r = std::get_deleter<ReleaseRange>(owner);
  return r ? r->n : 0;
}


std::string read_text_file(const std::string& path, size_t max_bytes) {
  check_regular_file(path, "file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open (", std::strerror(errno), ")");
  in.seekg(0, std::ios::end);
  const auto size = static_cast<size_t>(in.tellg());
  if (size > max_bytes) fail(path, ": file is larger than ", max_bytes >> 20, " MB");
  in.seekg(0);
  std::string text(size, '\0');
  in.read(text.data(), static_cast<std::streamsize>(size));
  if (static_cast<size_t>(in.gcount()) != size) fail(path, ": read error");
  return text;
}

std::string read_utf8_text(const std::string& path) {
  std::string text = read_text_file(path);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) fail(path, ": text file is empty");
  const size_t bad = first_invalid_utf8(text);
  if (bad != std::string::npos)
    fail(path, ": not UTF-8 text (", text[bad] == 0 ? "a NUL byte" : "an invalid byte", " at offset ", bad, ")");
  return text;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(path, ": cannot write (", std::strerror(errno), ")");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      fail(path, ": write failed (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail(path, ": cannot rename temporary file (", std::strerror(errno), ")");
  }
}

}  // namespace ikv::io
