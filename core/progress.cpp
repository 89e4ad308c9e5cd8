#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

#include "core/interrupt.h"

namespace moba {

Progress::Progress(std::string label, int64_t total, bool quiet)
    : label_(std::move(label)), total_(total), quiet_(quiet), tty_(isatty(2) != 0),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

Progress::~Progress() { finish(); }

void Progress::advance(int64_t n) {
  throw_if_interrupted();  // a safe point: the caller is between units of work
  done_ += n;
  const auto now = std::chrono::steady_clock::now();
  // Terminals get a live line 5x a second; logs get a line every 10 s at most.
  const auto period = tty_ ? std::chrono::milliseconds(200) : std::chrono::milliseconds(10000);
  if (now - last_ >= period) {
    last_ = now;
    draw(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (!quiet_ && secs > 0.5) draw(true);
}

void Progress::draw(bool final_line) {
  if (quiet_) return;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double pct = total_ > 0 ? 100.0 * static_cast<double>(done_) / static_cast<double>(total_) : 100.0;
  std::fprintf(stderr, "%s%s: %lld/%lld (%.0f%%) %.1fs%s", tty_ ? "\r" : "", label_.c_str(),
               static_cast<long long>(done_), static_cast<long long>(total_), pct, secs,
               (final_line || !tty_) ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace moba
