#include "experiments/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "core/interrupt.h"

extern "C" char** environ;

namespace moba::cli {

int run_child_process(const std::vector<std::string>& argv, const std::string& log,
                      const std::vector<std::string>& env) {
  std::vector<std::string> copy = argv;
  std::vector<char*> cargv;
  for (auto& a : copy) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  // The child's environment: this process's, minus the names `env` sets, plus `env`.
  std::vector<std::string> env_copy = env;
  std::vector<char*> cenv;
  for (char** e = environ; *e; ++e) {
    const std::string_view entry(*e);
    const auto name = entry.substr(0, entry.find('=') + 1);  // "NAME="
    bool replaced = false;
    for (const auto& x : env) replaced = replaced || (!name.empty() && std::string_view(x).substr(0, name.size()) == name);
    if (!replaced) cenv.push_back(*e);
  }
  for (auto& x : env_copy) cenv.push_back(x.data());
  cenv.push_back(nullptr);
  int fd = -1;
  if (!log.empty()) {
    fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot write " + log);
  }
  std::fflush(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(137);  // the parent died before prctl took effect
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execve(cargv[0], cargv.data(), cenv.data());
    std::fprintf(stderr, "cannot run %s: %s\n", cargv[0], std::strerror(errno));
    _exit(127);
  }
  if (fd >= 0) ::close(fd);
  int status = 0, forwarded = 0;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) throw std::runtime_error("waitpid failed");
    const int sig = pending_interrupt();
    if (sig != 0 && forwarded != sig) {
      ::kill(pid, sig);
      forwarded = sig;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

int exit_code_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 1;
}

}  // namespace moba::cli
