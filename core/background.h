#pragma once
// Background threads: work whose result is needed later, not now (analysis.h5's compression
// and the summaries beside a GPU analysis, the dump's SHA-256 for run.json), yields the CPU to
// the threads that feed the device (the next KV group's read, the head enqueues). Without it
// a kept head's compression (an OpenMP team over every core) and the summaries' team starve
// the reader, whose group the device then waits for (B4 on an H100: a group read of 43-70 ms
// took 133 ms beside head 0's writes; kernels/cuda/NOTES.md, twenty-sixth session).

namespace moba {

// Lowers the calling thread's scheduling priority (Linux: nice +kBackgroundNice for this
// thread only); OpenMP teams the thread starts afterwards inherit it. Best effort: where the
// system refuses, the thread keeps its priority. Never raises a priority.
void lower_thread_priority();

}  // namespace moba
