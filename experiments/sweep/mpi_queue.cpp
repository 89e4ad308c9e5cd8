#include "experiments/sweep/mpi_queue.h"

// The C API only (no C++ bindings, which would need libmpi_cxx).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cstdlib>
#include <exception>

namespace moba::sweep {
namespace {

enum Tag { kRequest = 1, kJob = 2, kStop = 3 };

void send_string(const std::string& s, int dest, int tag) {
  MPI_Send(s.data(), static_cast<int>(s.size()), MPI_CHAR, dest, tag, MPI_COMM_WORLD);
}

// A job as one message: the log path, then the arguments, separated by \x1f.
std::string encode(const MpiJob& j) {
  std::string s = j.log;
  for (const auto& a : j.args) s += "\x1f" + a;
  return s;
}

MpiJob decode(const std::string& s) {
  MpiJob j;
  size_t start = 0;
  bool first = true;
  for (;;) {
    const size_t p = s.find('\x1f', start);
    const std::string part = s.substr(start, p == std::string::npos ? std::string::npos : p - start);
    if (first) j.log = part;
    else j.args.push_back(part);
    first = false;
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return j;
}

}  // namespace

int mpi_world_size_from_env() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"})
    if (const char* e = std::getenv(v))
      if (const int n = std::atoi(e); n > 0) return n;
  return 1;
}

int run_mpi(const MpiCoordinator& c, int (*exit_code_of)(const std::exception_ptr&)) {
  MPI_Init(nullptr, nullptr);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int rc = 0;
  if (rank == 0) {
    std::vector<MpiJob> jobs;
    std::exception_ptr error;
    try {
      jobs = c.setup();
    } catch (...) {
      error = std::current_exception();
      rc = exit_code_of(error);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (error) {
      MPI_Finalize();
      std::rethrow_exception(error);
    }
    // Requests carry the previous job's result: {job index or -1, wait status}.
    size_t next = 0;
    int stopped = 0;
    while (stopped < size - 1) {
      int msg[2];
      MPI_Status st;
      MPI_Recv(msg, 2, MPI_INT, MPI_ANY_SOURCE, kRequest, MPI_COMM_WORLD, &st);
      if (msg[0] >= 0) c.finished(static_cast<size_t>(msg[0]), msg[1], st.MPI_SOURCE);
      if (next < jobs.size()) {
        const int idx = static_cast<int>(next);
        MPI_Send(&idx, 1, MPI_INT, st.MPI_SOURCE, kJob, MPI_COMM_WORLD);
        send_string(encode(jobs[next]), st.MPI_SOURCE, kJob);
        c.handed(next, st.MPI_SOURCE);
        ++next;
      } else {
        const int none = -1;
        MPI_Send(&none, 1, MPI_INT, st.MPI_SOURCE, kStop, MPI_COMM_WORLD);
        ++stopped;
      }
    }
    rc = c.finish();
  } else {
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rc == 0) {
      int msg[2] = {-1, 0};
      for (;;) {
        MPI_Send(msg, 2, MPI_INT, 0, kRequest, MPI_COMM_WORLD);
        int idx = 0;
        MPI_Status st;
        MPI_Recv(&idx, 1, MPI_INT, 0, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
        if (st.MPI_TAG == kStop) break;
        MPI_Probe(0, kJob, MPI_COMM_WORLD, &st);
        int len = 0;
        MPI_Get_count(&st, MPI_CHAR, &len);
        std::string buf(static_cast<size_t>(len), '\0');
        MPI_Recv(buf.data(), len, MPI_CHAR, 0, kJob, MPI_COMM_WORLD, &st);
        msg[0] = idx;
        msg[1] = c.run(decode(buf));
      }
    }
  }
  MPI_Finalize();
  return rank == 0 ? rc : (rc == 0 ? 0 : rc);
}

}  // namespace moba::sweep
