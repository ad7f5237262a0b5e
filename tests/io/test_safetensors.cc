// The safetensors reader must reject every inconsistency with a message naming the file and the
// tensor, and never read outside the buffer (ASan builds and the fuzz target check the latter).
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "io/error.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "test_util.h"

using namespace ikv;

namespace {

std::string tmp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / "ikv-test-io";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

// A file image from a literal header and a data buffer.
std::string image(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + std::string(data_bytes, '\x01');
}

std::string parse_error(const std::string& bytes) {
  try {
    io::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "f.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("safetensors round trip with metadata") {
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> b = {0x3c00, 0xc000};  // fp16 1.0, -2.0
  const std::string path = tmp_path("rt.safetensors");
  io::write_safetensors(path,
                        {{"a", io::DType::F32, {2, 3}, a.data(), a.size() * 4},
                         {"b", io::DType::F16, {2}, b.data(), b.size() * 2}},
                        {{"origin", "test"}});
  io::SafetensorsFile f(path);
  CHECK(f.metadata().at("origin") == "test");
  CHECK(f.get("a").shape == std::vector<int64_t>{2, 3});
  CHECK(io::to_f32(f.get("a"), path) == a);
  CHECK(io::to_f32(f.get("b"), path) == std::vector<float>{1.0f, -2.0f});
  CHECK_THROWS_WITH_AS(f.get("c"), doctest::Contains("missing tensor c"), Error);
  CHECK(!std::filesystem::exists(path + ".tmp"));
}

TEST_CASE("safetensors corruptions are one-line errors naming file and tensor") {
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  CHECK(parse_error(image(ok, 16)).empty());
  CHECK(parse_error("abc").find("truncated") != std::string::npos);
  // Header length larger than the file.
  std::string overrun = image(ok, 16);
  uint64_t big = 1000;
  std::memcpy(overrun.data(), &big, 8);
  CHECK(parse_error(overrun).find("overruns the file") != std::string::npos);
  // Absurd header length (would be a huge allocation if trusted).
  uint64_t huge = ~uint64_t{0};
  std::memcpy(overrun.data(), &huge, 8);
  CHECK(parse_error(overrun).find("implausible") != std::string::npos);
  CHECK(parse_error(image("{not json", 0)).find("bad safetensors header JSON") != std::string::npos);
  CHECK(parse_error(image(ok, 8)).find("tensor w: data_offsets [0, 16] leave the data buffer") != std::string::npos);
  CHECK(parse_error(image(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 16)).find("do not match shape") !=
        std::string::npos);
  CHECK(parse_error(image(R"({"w":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}})", 4)).find("tensor w: unknown dtype") !=
        std::string::npos);
  CHECK(parse_error(image(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)).find("bad shape") !=
        std::string::npos);
  CHECK(parse_error(image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8)).find("leave the data buffer") !=
        std::string::npos);
  const std::string overlap =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  CHECK(parse_error(image(overlap, 12)).find("overlap") != std::string::npos);
  CHECK(parse_error(image(R"({"w":{"dtype":"F32","shape":[1]}})", 4)).find("tensor w: entry needs") != std::string::npos);
  CHECK(parse_error(image(R"([1,2])", 0)).find("not a JSON object") != std::string::npos);
  // Overflowing shapes must not wrap around to a small byte count.
  CHECK(parse_error(image(R"({"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,0]}})", 0))
            .find("too large") != std::string::npos);
  // Every message is one line and names the file.
  for (const auto& s : {parse_error(overrun), parse_error(image("{not json", 0))}) {
    CHECK(s.rfind("f.safetensors:", 0) == 0);
    CHECK(s.find('\n') == std::string::npos);
  }
}

TEST_CASE("truncated checkpoint files on disk are rejected") {
  std::vector<float> a(64, 1.0f);
  const std::string path = tmp_path("trunc.safetensors");
  io::write_safetensors(path, {{"a", io::DType::F32, {64}, a.data(), 256}}, {});
  std::string bytes = io::read_text_file(path);
  for (size_t cut : {size_t{3}, size_t{20}, bytes.size() - 1}) {
    io::write_file_atomic(path, bytes.substr(0, cut));
    CHECK_THROWS_AS(io::SafetensorsFile{path}, Error);
  }
  CHECK_THROWS_WITH_AS(io::SafetensorsFile{tmp_path("absent.safetensors")}, doctest::Contains("cannot open"), Error);
}

TEST_CASE("a tensor named twice in a header is an error (JSON would keep the last silently)") {
  const std::string w = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  CHECK(parse_error(image("{" + w + "," + w + "}", 8)) == "f.safetensors: safetensors header names tensor w twice");
  // The same key inside a tensor's entry or the metadata is not a tensor name.
  const std::string nested = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"w":"x"}})";
  CHECK(parse_error(image(nested, 8)).empty());
}

TEST_CASE("safetensors streaming writer: pieces of any size, all or nothing") {
  std::vector<float> a(1000);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i);
  std::vector<uint16_t> b = {0x3f80, 0xc000, 0x4040};  // bf16 1, -2, 3
  const std::vector<io::TensorToWrite> specs = {{"a", io::DType::F32, {10, 100}, nullptr, 4000},
                                                {"b", io::DType::BF16, {3}, nullptr, 6}};
  const std::string path = tmp_path("stream.safetensors");
  {
    io::SafetensorsWriter w(path, specs, {{"format", "pt"}});
    CHECK(w.data_bytes() == 4006);
    const char* pa = reinterpret_cast<const char*>(a.data());
    w.append(pa, 1);  // a tensor may be split anywhere, even across its elements
    w.append(pa + 1, 3998);
    w.append(pa + 3999, 1);
    w.append(b.data(), 6);
    w.finish();
  }
  io::SafetensorsFile f(path);
  CHECK(io::to_f32(f.get("a"), path) == a);
  CHECK(io::to_f32(f.get("b"), path) == std::vector<float>{1, -2, 3});
  CHECK(f.metadata().at("format") == "pt");
  // The same bytes as write_safetensors.
  const std::string path2 = tmp_path("whole.safetensors");
  io::write_safetensors(path2, {{"a", io::DType::F32, {10, 100}, a.data(), 4000}, {"b", io::DType::BF16, {3}, b.data(), 6}},
                        {{"format", "pt"}});
  CHECK(io::read_text_file(path) == io::read_text_file(path2));

  const std::string partial = tmp_path("partial.safetensors");
  std::filesystem::remove(partial);
  {
    io::SafetensorsWriter w(partial, specs, {});
    w.append(a.data(), 4000);
    CHECK_THROWS_WITH_AS(w.append(a.data(), 7), doctest::Contains("4007 data bytes exceed the header's 4006"), Error);
    CHECK_THROWS_WITH_AS(w.finish(), doctest::Contains("4000 data bytes written, the header announces 4006"), Error);
  }  // destroyed unfinished: the temporary file goes, nothing is left under the name
  CHECK_FALSE(std::filesystem::exists(partial));
  CHECK_FALSE(std::filesystem::exists(partial + ".tmp"));
}

namespace {

// This process's resident file-backed memory, kB (/proc/self/status RssFile).
long rss_file_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("RssFile:", 0) == 0) return std::stol(line.substr(8));
  return -1;
}

}  // namespace

TEST_CASE("a held range of a mapped file keeps it mapped and leaves the resident set when let go") {
  std::vector<float> a(8 << 20);  // 32 MB
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i % 1000);
  const std::string path = tmp_path("held.safetensors");
  io::write_safetensors(path, {{"a", io::DType::F32, {int64_t(a.size())}, a.data(), a.size() * 4}}, {});
  std::shared_ptr<const void> held;
  const float* p = nullptr;
  {
    io::SafetensorsFile f(path);
    const io::TensorView& t = f.get("a");
    p = reinterpret_cast<const float*>(t.data);
    held = io::hold_range(f.mapping(), t.data, t.nbytes);
  }  // the file object is gone; the mapping lives on in `held`
  const long before = rss_file_kb();
  double sum = 0;
  for (size_t i = 0; i < a.size(); i += 1024) sum += p[i];  // touch every page
  CHECK(sum > 0);
  const long touched = rss_file_kb();
  if (before < 0) return;  // no /proc
  CHECK(touched - before > 28 * 1024);
  held.reset();  // the last holder: the range's pages are released and the file unmapped
  CHECK(touched - rss_file_kb() > 28 * 1024);
  std::filesystem::remove(path);
}
