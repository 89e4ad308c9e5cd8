#include "core/interrupt.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <string>
#include <system_error>

#include "core/errors.h"

namespace moba {
namespace {

volatile std::sig_atomic_t g_signal = 0;
volatile std::sig_atomic_t g_count = 0;

// Records the first signal. Tools deliver one interrupt twice (timeout signals the child and
// then its process group), so only a third signal takes the default action at once.
extern "C" void record_signal(int signo) {
  if (!g_signal) g_signal = signo;
  if (++g_count >= 3) {
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

int pending_interrupt() { return g_signal; }

void throw_if_interrupted() {
  if (const int s = g_signal) throw Interrupted(s);
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
