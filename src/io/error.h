// Errors: raised where a bad value is first seen, carrying the file (or tensor, or key) and the
// problem in one line. Front ends print what() and exit 2.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace ikv {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// fail("model.safetensors", ": tensor ", name, " overruns the file") -> throws Error.
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw Error(os.str());
}

}  // namespace ikv
