#pragma once
// Progress reporting for long work: a single updating line on stderr, throttled, silent
// when quiet or when stderr is not a terminal and the work is short.
#include <chrono>
#include <cstdint>
#include <string>

namespace moba {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool quiet = false);
  ~Progress();
  // Thread-compatible, call from one thread. Also the poll point of core/interrupt.h: throws
  // Interrupted when Ctrl-C or SIGTERM arrived, so call it between units of work.
  void advance(int64_t n = 1);
  void finish();

 private:
  void draw(bool final_line);
  std::string label_;
  int64_t total_, done_ = 0;
  bool quiet_, finished_ = false, tty_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace moba
