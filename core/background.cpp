// lower_thread_priority (core/background.h).
#include "core/background.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace moba {

namespace {
// Under Linux's fair scheduler a thread at nice 5 gets about a third of the CPU share of one at
// 0 when both want a core, and all of an idle core.
constexpr int kBackgroundNice = 5;
}  // namespace

void lower_thread_priority() {
#if defined(__linux__)
  // PRIO_PROCESS with a thread id sets that thread's nice value alone (Linux; setpriority(2)).
  const auto tid = static_cast<id_t>(syscall(SYS_gettid));
  errno = 0;
  const int now = getpriority(PRIO_PROCESS, tid);
  if (errno == 0 && now < kBackgroundNice) setpriority(PRIO_PROCESS, tid, kBackgroundNice);
#endif
}

}  // namespace moba
