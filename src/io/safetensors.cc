#include "io/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <utility>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "io/dtype.h"
#include "io/error.h"

namespace ikv::io {
namespace {

// Real headers are a few hundred KB at most; anything larger is a corrupt length field.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

struct DTypeInfo {
  const char* name;
  DType dtype;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {"F32", DType::F32, 4}, {"F16", DType::F16, 2}, {"BF16", DType::BF16, 2}, {"F64", DType::F64, 8},
    {"I64", DType::I64, 8}, {"I32", DType::I32, 4}, {"I16", DType::I16, 2},   {"I8", DType::I8, 1},
    {"U8", DType::U8, 1},   {"U16", DType::U16, 2}, {"U32", DType::U32, 4},
};

bool parse_dtype(const std::string& s, DType* out) {
  for (const auto& d : kDTypes)
    if (s == d.name) return *out = d.dtype, true;
  return false;
}

}  // namespace

const char* dtype_name(DType t) {
  for (const auto& d : kDTypes)
    if (d.dtype == t) return d.name;
  return "?";
}
size_t dtype_size(DType t) {
  for (const auto& d : kDTypes)
    if (d.dtype == t) return d.size;
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

SafetensorsHeader parse_safetensors(const uint8_t* bytes, size_t size, const std::string& path) {
  if (size < 8) fail(path, ": truncated safetensors file (", size, " bytes, need at least 8)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes) fail(path, ": safetensors header length ", header_len, " is implausible");
  if (header_len > size - 8)
    fail(path, ": safetensors header (", header_len, " bytes) overruns the file (", size, " bytes)");
  const uint8_t* buffer = bytes + 8 + header_len;
  const uint64_t buffer_size = size - 8 - header_len;

  // JSON objects keep the last of repeated keys; a tensor named twice would silently lose one.
  std::set<std::string> names;
  std::string repeated;
  auto note_keys = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && repeated.empty() &&
        !names.insert(parsed.get<std::string>()).second)
      repeated = parsed.get<std::string>();
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(bytes + 8, bytes + 8 + header_len, note_keys);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": bad safetensors header JSON (", e.what(), ")");
  }
  if (!j.is_object()) fail(path, ": safetensors header is not a JSON object");
  if (!repeated.empty()) fail(path, ": safetensors header names tensor ", repeated, " twice");

  SafetensorsHeader h;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path, ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail(path, ": __metadata__ value '", m.key(), "' is not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail(path, ": tensor ", name, ": entry needs dtype, shape and data_offsets");
    TensorView t;
    t.name = name;
    if (!v["dtype"].is_string() || !parse_dtype(v["dtype"].get<std::string>(), &t.dtype))
      fail(path, ": tensor ", name, ": unknown dtype ", v["dtype"].dump());
    const auto& shape = v["shape"];
    if (!shape.is_array() || shape.size() > 8) fail(path, ": tensor ", name, ": bad shape ", shape.dump());
    // numel must not overflow: each dim < 2^40 and the running product checked.
    uint64_t numel = 1;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t{1} << 40))
        fail(path, ": tensor ", name, ": bad shape ", shape.dump());
      uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / dim)
        fail(path, ": tensor ", name, ": shape ", shape.dump(), " is too large");
      numel *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(path, ": tensor ", name, ": bad data_offsets ", off.dump());
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > buffer_size)
      fail(path, ": tensor ", name, ": data_offsets [", begin, ", ", end, "] leave the data buffer (",
           buffer_size, " bytes)");
    if (end - begin != numel * dtype_size(t.dtype))
      fail(path, ": tensor ", name, ": ", end - begin, " bytes do not match shape ", shape_str(t.shape), " of ",
           dtype_name(t.dtype));
    t.data = buffer + begin;
    t.nbytes = end - begin;
    h.tensors.push_back(std::move(t));
  }
  std::sort(h.tensors.begin(), h.tensors.end(),
            [](const TensorView& a, const TensorView& b) { return a.data < b.data; });
  for (size_t i = 1; i < h.tensors.size(); ++i) {
    const auto& a = h.tensors[i - 1];
    if (a.data + a.nbytes > h.tensors[i].data)
      fail(path, ": tensors ", a.name, " and ", h.tensors[i].name, " overlap");
  }
  return h;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(std::make_shared<const MappedFile>(path)) {
  header_ = parse_safetensors(file_->data(), file_->size(), path);
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : header_.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorView& SafetensorsFile::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) fail(path(), ": missing tensor ", name);
  return *t;
}

const std::string& SafetensorsFile::required_metadata(const std::string& key, const std::string& kind) const {
  auto it = header_.metadata.find(key);
  if (it == header_.metadata.end()) fail(path(), ": not ", kind, " (metadata ", key, " missing)");
  return it->second;
}

void check_float_dtype(const TensorView& t, const std::string& path) {
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16 && t.dtype != DType::F64)
    fail(path, ": tensor ", t.name, ": dtype ", dtype_name(t.dtype), " is not a float type");
}

std::vector<float> to_f32(const TensorView& t, const std::string& path) {
  check_float_dtype(t, path);
  std::vector<float> out(static_cast<size_t>(t.numel()));
  const size_t n = out.size();
  switch (t.dtype) {
    case DType::F32:
      std::memcpy(out.data(), t.data, n * 4);
      break;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        out[i] = fp16_to_fp32(h);
      }
      break;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        out[i] = bf16_to_fp32(h);
      }
      break;
    case DType::F64:
      for (size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, t.data + 8 * i, 8);
        out[i] = static_cast<float>(d);
      }
      break;
    default:
      break;  // check_float_dtype refused it
  }
  return out;
}

void expect_shape(const TensorView& t, const std::vector<int64_t>& shape, const std::string& path) {
  if (t.shape != shape)
    fail(path, ": tensor ", t.name, " has shape ", shape_str(t.shape), ", config expects ", shape_str(shape));
}

std::string safetensors_header(const std::string& path, const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    if (static_cast<size_t>(numel) * dtype_size(t.dtype) != t.nbytes)
      fail(path, ": tensor ", t.name, ": ", t.nbytes, " bytes do not match shape ", shape_str(t.shape));
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string bytes(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return bytes + json;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  SafetensorsWriter out(path, tensors, metadata);
  for (const auto& t : tensors) out.append(t.data, t.nbytes);
  out.finish();
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, const std::vector<TensorToWrite>& tensors,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), tmp_(path + ".tmp") {
  const std::string header = safetensors_header(path, tensors, metadata);
  for (const auto& t : tensors) total_ += t.nbytes;
  out_ = std::fopen(tmp_.c_str(), "wb");
  if (!out_) fail(path, ": cannot write (", std::strerror(errno), ")");
  if (std::fwrite(header.data(), 1, header.size(), out_) != header.size()) {
    std::fclose(std::exchange(out_, nullptr));
    std::remove(tmp_.c_str());
    fail(path, ": write failed (disk full?)");
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  if (out_) {
    std::fclose(out_);
    std::remove(tmp_.c_str());
  }
}

void SafetensorsWriter::append(const void* data, size_t nbytes) {
  if (!out_) fail(path_, ": append after finish");
  if (nbytes > total_ - written_) fail(path_, ": ", written_ + nbytes, " data bytes exceed the header's ", total_);
  if (nbytes && std::fwrite(data, 1, nbytes, out_) != nbytes) fail(path_, ": write failed (disk full?)");
  written_ += nbytes;
}

void SafetensorsWriter::finish() {
  if (!out_) fail(path_, ": finished twice");
  if (written_ != total_) fail(path_, ": ", written_, " data bytes written, the header announces ", total_);
  const bool ok = std::fflush(out_) == 0;
  const bool closed = std::fclose(std::exchange(out_, nullptr)) == 0;
  if (!ok || !closed) {
    std::remove(tmp_.c_str());
    fail(path_, ": write failed (disk full?)");
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    std::remove(tmp_.c_str());
    fail(path_, ": cannot rename temporary file (", std::strerror(errno), ")");
  }
}

}  // namespace ikv::io
