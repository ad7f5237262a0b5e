#include <filesystem>
#include <fstream>

#include "io/data_root.h"
#include "io/error.h"
#include "io/mapped_file.h"
#include "io/sha256.h"
#include "test_util.h"

using namespace ikv;
namespace fs = std::filesystem;

TEST_CASE("sha256 of known strings") {
  CHECK(io::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(io::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("data files are verified against SHA256SUMS; altered or missing files are named") {
  fs::path root = fs::temp_directory_path() / "ikv-test-dataroot";
  fs::remove_all(root);
  fs::create_directories(root / "datasets" / "x");
  setenv("IKV_CACHE_DIR", (root / "cache").c_str(), 1);
  io::write_file_atomic((root / "datasets/x/a.txt").string(), "hello");
  io::write_file_atomic((root / "datasets/SHA256SUMS").string(), io::sha256_hex("hello") + "  ./x/a.txt\n");
  const std::string file = (root / "datasets/x/a.txt").string();
  CHECK_NOTHROW(io::verify_data_file(root.string(), file));
  CHECK(io::data_file(root.string(), "datasets/x/a.txt") == file);
  CHECK_THROWS_WITH_AS(io::data_file(root.string(), "datasets/x/b.txt"), doctest::Contains("datasets/x/b.txt: missing"),
                       Error);
  // Alter the file (new size, so the sha cache keyed on size+mtime cannot hide it).
  io::write_file_atomic(file, "hello!");
  CHECK_THROWS_WITH_AS(io::verify_data_file(root.string(), file), doctest::Contains("a.txt: sha256"), Error);
  // A file the lists do not mention is the user's own: accepted.
  io::write_file_atomic((root / "datasets/x/mine.txt").string(), "x");
  CHECK_NOTHROW(io::verify_data_file(root.string(), (root / "datasets/x/mine.txt").string()));
  unsetenv("IKV_CACHE_DIR");
}

TEST_CASE("the shared data root is found and its testbed files verify") {
  const std::string root = test::data_root();
  if (root.empty()) return;
  CHECK_NOTHROW(io::verify_data_file(root, root + "/models/testbed-26M/config.json"));
  CHECK_NOTHROW(io::verify_data_file(root, root + "/datasets/wikitext-2-raw/wiki.test.raw"));
}
