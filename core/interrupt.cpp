#include "core/interrupt.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <filesystem>
#include <string>
#include <system_error>

#include "core/errors.h"

namespace moba {
namespace {

// Lock-free atomics, not volatile sig_atomic_t: the handler may run on any thread, two
// signals on two threads at once (timeout's pair below), while the main thread polls; a
// volatile is safe against its own thread's handler only (ThreadSanitizer reported the race).
std::atomic<int> g_signal{0};
std::atomic<int> g_count{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs lock-free atomics");

// Records the first signal. Tools deliver one interrupt twice (timeout signals the child and
// then its process group), so only a third signal takes the default action at once.
extern "C" void record_signal(int signo) {
  int none = 0;
  g_signal.compare_exchange_strong(none, signo);
  if (g_count.fetch_add(1) + 1 >= 3) {
    signal(signo, SIG_DFL);
    raise(signo);
  }
}

}  // namespace

void install_interrupt_handlers() {
  struct sigaction sa = {};
  sa.sa_handler = record_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int pending_interrupt() { return g_signal.load(); }

void throw_if_interrupted() {
  if (const int s = g_signal.load()) throw Interrupted(s);
}

void remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const std::string prefix = target.filename().string() + ".tmp-";
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string rest = name.substr(prefix.size());  // "<pid>-<n>"
    const size_t dash = rest.find('-');
    if (dash == 0 || dash == std::string::npos || dash > 9 || rest.find_first_not_of("0123456789-") != std::string::npos)
      continue;  // not "<pid>-<n>" (a pid has at most 7 digits; longer would overflow stol)
    const long pid = std::stol(rest.substr(0, dash));
    if (pid <= 0 || pid == static_cast<long>(getpid())) continue;
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    std::error_code rm;
    fs::remove(it->path(), rm);
  }
}

}  // namespace moba
