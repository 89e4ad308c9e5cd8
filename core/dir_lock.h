#pragma once
// An advisory lock (flock) on a directory, exclusive or shared, held while the object lives and
// released when it is destroyed or the process ends (also by a crash or kill -9: the kernel
// drops it).
// Two moba processes writing one output directory refuse each other instead of deleting and
// renaming each other's files.
#include <memory>
#include <string>

namespace moba {

class DirLock {
 public:
  // Creates `dir` (and its parents) if missing and locks it, exclusively or (`shared`) beside
  // other shared holders. nullptr when another process holds a lock that excludes this one;
  // throws OutputError when the directory cannot be made or opened.
  static std::unique_ptr<DirLock> try_acquire(const std::string& dir, bool shared = false);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace moba
