#pragma once
// `mpirun -np N moba sweep CONFIG --out DIR` (built with MOBA_MPI): rank 0 sets the run
// directory up and hands jobs out one at a time to ranks 1..N-1, which run them as analyze
// child processes and report back; rank 0 marks them done and rebuilds sweep.csv. Compiled
// only with MOBA_MPI (experiments/CMakeLists.txt defines MOBA_HAVE_MPI).
#include <exception>
#include <functional>
#include <string>
#include <vector>

namespace moba::sweep {

// The launcher's rank count from the environment (Open MPI, PMI, PMIx), or 1 outside one.
int mpi_world_size_from_env();

struct MpiJob {
  std::vector<std::string> args;  // the analyze child's full argv (after /proc/self/exe)
  std::string log;
};

struct MpiCoordinator {
  // Rank 0: prepares DIR and returns the jobs to run (done ones left out). A thrown error
  // ends every rank with its exit code.
  std::function<std::vector<MpiJob>()> setup;
  // Rank 0: job i was handed to `rank`.
  std::function<void(size_t i, int rank)> handed;
  // Rank 0: job i (index into setup's list) finished with wait status `status` on `rank`.
  std::function<void(size_t i, int status, int rank)> finished;
  // Rank 0: after every job is done (returns the exit code).
  std::function<int()> finish;
  // Ranks >= 1: runs one job, returns its wait status.
  std::function<int(const MpiJob&)> run;
};

// Runs the sweep over MPI; returns this rank's exit code. Exceptions in setup on rank 0 are
// rethrown there after the other ranks were told to exit with the same code.
int run_mpi(const MpiCoordinator& c, int (*exit_code_of)(const std::exception_ptr&));

}  // namespace moba::sweep
