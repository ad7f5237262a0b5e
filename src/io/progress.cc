#include "io/progress.h"

#include <unistd.h>

#include <cstdio>

namespace ikv::io {

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)), total_(total), tty_(isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t done, int64_t tokens) {
  if (!tty_ || total_ <= 0) return;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = static_cast<double>(done) / static_cast<double>(total_);
  const double eta = done > 0 ? secs / done * (total_ - done) : 0;
  const int width = 30, filled = static_cast<int>(frac * width);
  std::fprintf(stderr, "\r%s [%.*s%*s] %lld/%lld  %.0fs elapsed, ETA %.0fs", label_.c_str(), filled,
               "##############################", width - filled, "", static_cast<long long>(done),
               static_cast<long long>(total_), secs, eta);
  if (tokens >= 0 && secs > 0) std::fprintf(stderr, ", %.0f tokens/s", static_cast<double>(tokens) / secs);
  std::fprintf(stderr, " ");
  std::fflush(stderr);
}

void Progress::finish() {
  if (tty_ && !finished_ && total_ > 0) std::fprintf(stderr, "\r\033[K");
  finished_ = true;
}

}  // namespace ikv::io
