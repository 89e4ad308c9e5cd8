#pragma once
// Running another program from a command (`moba sweep`'s analyze jobs, `moba plot`'s script).
#include <string>
#include <vector>

namespace moba::cli {

// Runs argv[0] (a path) with argv and waits for it. With `log`, the child's stdout and
// stderr go to that file (created or truncated). The child is killed when this process dies
// (kill -9 included), so it never outlives its parent. SIGINT / SIGTERM recorded meanwhile
// by core/interrupt.h are passed on to the child, once per signal. Returns the waitpid
// status; throws std::runtime_error when the child cannot be started or waited for.
// `env` entries "NAME=value" are set in the child's environment (replacing NAME); the rest
// is inherited. Safe to call from several threads at once (one child each): everything the
// child needs is prepared before fork.
int run_child_process(const std::vector<std::string>& argv, const std::string& log = "",
                      const std::vector<std::string>& env = {});

// A wait status as a shell reports it: the exit code, or 128 + the signal that ended it.
int exit_code_of(int wait_status);

}  // namespace moba::cli
