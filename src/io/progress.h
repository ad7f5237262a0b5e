// A progress bar with ETA (and tokens/s when given) on stderr, drawn only when stderr is a terminal
// (logs stay clean).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace ikv::io {

class Progress {
 public:
  Progress(std::string label, int64_t total);
  // done of total; tokens >= 0 adds the throughput since the bar started.
  void update(int64_t done, int64_t tokens = -1);
  void finish();
  ~Progress() { finish(); }

 private:
  std::string label_;
  int64_t total_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace ikv::io
