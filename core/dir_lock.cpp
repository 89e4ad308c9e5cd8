#include "core/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "core/errors.h"

namespace moba {

std::unique_ptr<DirLock> DirLock::try_acquire(const std::string& dir, bool shared) {
  // The path may be removed or renamed by its holder between our open and our lock (a finished
  // analyze renames DIR.partial to DIR): the lock then holds an inode no longer at `dir`, so
  // check that it still is, else start again on the directory now there.
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw OutputError("cannot create " + dir + ": " + ec.message());
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) continue;
      throw OutputError("cannot open " + dir + ": " + std::strerror(errno));
    }
    if (::flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) return nullptr;
      throw OutputError("cannot lock " + dir + ": " + std::strerror(err));
    }
    struct stat held {}, now {};
    if (::fstat(fd, &held) == 0 && ::stat(dir.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
        held.st_dev == now.st_dev)
      return std::unique_ptr<DirLock>(new DirLock(fd));
    ::close(fd);
  }
  throw OutputError("cannot lock " + dir + ": it keeps being replaced");
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace moba
