// Every config shipped in configs/ passes schema validation (paths are checked at run time).
#include <filesystem>

#include "exp/config.h"
#include "test_util.h"

TEST_CASE("configs/*.yaml are valid") {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::string(IKV_SOURCE_DIR) + "/configs")) {
    if (e.path().extension() != ".yaml") continue;
    INFO(e.path().string());
    CHECK_NOTHROW(ikv::exp::load_config(e.path().string()));
    ++n;
  }
  CHECK(n >= 7);  // quickstart, ci, paper-table1..5
}
