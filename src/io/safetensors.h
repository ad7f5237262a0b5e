// safetensors: 8-byte little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data buffer; offsets are relative to the start of the buffer. The parser trusts no
// byte: every length, offset and shape is checked against the file before anything is read.
#pragma once
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/mapped_file.h"

namespace ikv::io {

enum class DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, U16, U32 };
const char* dtype_name(DType);
size_t dtype_size(DType);

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mapped file
  size_t nbytes = 0;
  int64_t numel() const;
};

struct SafetensorsHeader {
  std::vector<TensorView> tensors;  // in file order of their offsets
  std::map<std::string, std::string> metadata;
};

// Parses and validates a whole safetensors image in memory. `path` names the file in errors.
SafetensorsHeader parse_safetensors(const uint8_t* bytes, size_t size, const std::string& path);

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return file_->path(); }
  // The mapping the tensor views point into, for views that outlive this object (io::hold_range).
  const std::shared_ptr<const MappedFile>& mapping() const { return file_; }
  const std::vector<TensorView>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorView* find(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // Error naming the file and tensor
  // metadata[key]; absent is the Error "PATH: not KIND (metadata KEY missing)", kind as in
  // "an IntactKV file": a file of another kind is refused by the first key it lacks.
  const std::string& required_metadata(const std::string& key, const std::string& kind) const;

 private:
  std::shared_ptr<const MappedFile> file_;
  SafetensorsHeader header_;
};

// Error naming the file and tensor unless its dtype is F32/F16/BF16/F64.
void check_float_dtype(const TensorView& t, const std::string& path);
// Converts F32/F16/BF16/F64 data to fp32. Other dtypes are an error naming the tensor.
std::vector<float> to_f32(const TensorView& t, const std::string& path);
// Checks a tensor's shape; the error names file, tensor, expected and actual shape.
void expect_shape(const TensorView& t, const std::vector<int64_t>& shape, const std::string& path);
std::string shape_str(const std::vector<int64_t>& shape);

struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};
// Writes atomically (temporary file + rename). Header padded with spaces to 8-byte alignment.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata);

// The header write_safetensors writes for these tensors (data ignored, nbytes checked against
// the shape): the 8-byte length and the padded JSON. Data offsets follow the order given.
std::string safetensors_header(const std::string& path, const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata);

// A safetensors file written as a stream, for files larger than memory: the header (every
// tensor's name, dtype and shape, data ignored) goes first, then append() takes the data buffer
// in order, in pieces of any size. finish() checks that every byte came and renames PATH.tmp into
// place; a writer destroyed unfinished (an exception on the way) removes PATH.tmp.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, const std::vector<TensorToWrite>& tensors,
                    const std::map<std::string, std::string>& metadata);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  void append(const void* data, size_t nbytes);
  void finish();
  uint64_t data_bytes() const { return total_; }

 private:
  std::string path_, tmp_;
  std::FILE* out_ = nullptr;
  uint64_t total_ = 0, written_ = 0;
};

}  // namespace ikv::io
