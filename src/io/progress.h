// A progress bar with ETA on stderr, drawn only when stderr is a terminal (logs stay clean).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace ikv::io {

class Progress {
 public:
  Progress(std::string label, int64_t total);
  void update(int64_t done);
  void finish();
  ~Progress() { finish(); }

 private:
  std::string label_;
  int64_t total_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace ikv::io
