// The GPU's side of a run's timeline: every kernel, copy and memset a process runs, with its
// stream and its start and end on the device, recorded by CUPTI's activity API and written as a
// Chrome trace when the process exits. Loaded by the CUDA driver, not linked into moba:
//
//   export CUDA_INJECTION64_PATH=build-cuda/tests/gpu/libmoba_kernel_trace.so
//   MOBA_KERNEL_TRACE=gpu.json moba analyze ... --trace host.json
//   python3 tests/gpu/kernel_trace_sum.py gpu.json [host.json]
//
// Times are on CLOCK_MONOTONIC (the steady clock `moba analyze --trace` records its origin on),
// so the two files line up. The device machine has no Nsight Systems; this is its stand-in.
#include <cupti.h>

#include <cxxabi.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Activity {
  int kind;  // 0 kernel, 1 copy, 2 memset, 3 runtime API call (stream: the calling thread)
  uint32_t stream;
  uint64_t start, end, bytes;
  std::string name;
};

std::mutex g_mu;
std::vector<Activity> g_acts;
long long g_offset_ns = 0;  // CLOCK_MONOTONIC minus CUPTI's timestamp
bool g_written = false;

long long monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// "void moba::kernels::(anonymous namespace)::dense_pass_kernel<...>(Args)" -> "dense_pass_kernel<...>".
std::string short_name(const char* mangled) {
  int status = 0;
  char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string s = status == 0 && d ? d : mangled;
  std::free(d);
  for (size_t at; (at = s.find("(anonymous namespace)::")) != std::string::npos;) s.erase(at, 23);
  // The name: after the last ' ' or "::" outside the template arguments, up to the parameter
  // list (the first '(' outside them: the arguments may hold casts such as "(Nx)1").
  int depth = 0;
  size_t cut = 0, end = s.size();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<') ++depth;
    if (s[i] == '>') --depth;
    if (depth != 0) continue;
    if (s[i] == '(') {
      end = i;
      break;
    }
    if (s[i] == ' ' || (s[i] == ':' && i + 1 < s.size() && s[i + 1] == ':')) cut = i + 1;
  }
  s = s.substr(cut, end - cut);
  if (!s.empty() && s[0] == ':') s = s.substr(1);
  for (const char* ns : {"moba::kernels::", "moba::analysis::", "cuda_detail::", "gpu::"})
    for (size_t at; (at = s.find(ns)) != std::string::npos;) s.erase(at, std::strlen(ns));
  return s;
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *size = 8 << 20;
  *buffer = static_cast<uint8_t*>(aligned_alloc(8, *size));
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* rec = nullptr;
  std::vector<Activity> got;
  while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
    if (rec->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || rec->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
      got.push_back({0, k->streamId, k->start, k->end, 0, short_name(k->name)});
    } else if (rec->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(rec);
      const char* kinds[] = {"copy ?", "copy HtoD", "copy DtoH", "copy HtoA", "copy AtoH", "copy AtoA",
                             "copy AtoD", "copy DtoA", "copy DtoD", "copy HtoH", "copy PtoP"};
      got.push_back({1, m->streamId, m->start, m->end, m->bytes, kinds[m->copyKind <= 10 ? m->copyKind : 0]});
    } else if (rec->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(rec);
      got.push_back({2, m->streamId, m->start, m->end, m->bytes, "memset"});
    } else if (rec->kind == CUPTI_ACTIVITY_KIND_RUNTIME) {
      const auto* a = reinterpret_cast<const CUpti_ActivityAPI*>(rec);
      const char* name = nullptr;
      if (cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, a->cbid, &name) != CUPTI_SUCCESS || !name) name = "cuda?";
      got.push_back({3, a->threadId, a->start, a->end, 0, name});
    }
  }
  std::free(buffer);
  std::lock_guard<std::mutex> lock(g_mu);
  g_acts.insert(g_acts.end(), got.begin(), got.end());
}

std::string escaped(const std::string& s) {
  std::string o;
  for (const char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

void write_trace() {
  cuptiActivityFlushAll(1);
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_written) return;
  g_written = true;
  const char* path = std::getenv("MOBA_KERNEL_TRACE");
  if (!path || !*path) path = "kernel_trace.json";
  FILE* f = std::fopen(path, "w");
  if (!f) {
    std::fprintf(stderr, "kernel_trace: cannot write %s\n", path);
    return;
  }
  // ts in microseconds on CLOCK_MONOTONIC, as absolute values (the summary script aligns them).
  std::fprintf(f, "{\"displayTimeUnit\": \"ms\", \"otherData\": {\"clock\": \"CLOCK_MONOTONIC us\"}, \"traceEvents\": [\n");
  bool first = true;
  for (const Activity& a : g_acts) {
    const double ts = (static_cast<long long>(a.start) + g_offset_ns) / 1e3;
    const double dur = (a.end - a.start) / 1e3;
    std::fprintf(f, "%s  {\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"ts\": %.3f, \"dur\": %.3f, "
                    "\"pid\": %d, \"tid\": %u, \"args\": {\"bytes\": %llu}}",
                 first ? "" : ",\n", escaped(a.name).c_str(),
                 a.kind == 0 ? "kernel" : a.kind == 1 ? "copy" : a.kind == 2 ? "memset" : "api", ts, dur,
                 a.kind == 3 ? 3 : 2, a.stream, static_cast<unsigned long long>(a.bytes));
    first = false;
  }
  std::fprintf(f, "\n]}\n");
  std::fclose(f);
  std::fprintf(stderr, "kernel_trace: %zu activities -> %s\n", g_acts.size(), path);
}

}  // namespace

// Called by the CUDA driver when CUDA_INJECTION64_PATH names this library (at cuInit).
extern "C" int InitializeInjection(void) {
  uint64_t t = 0;
  const long long before = monotonic_ns();
  cuptiGetTimestamp(&t);
  const long long after = monotonic_ns();
  g_offset_ns = (before + after) / 2 - static_cast<long long>(t);
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS) return 0;
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET);
  // MOBA_KERNEL_TRACE_API=1: the runtime API calls too (cat "api", pid 3, tid the calling
  // thread): where the host's CUDA calls take time (a kernel's first launch loading its module).
  if (const char* api = std::getenv("MOBA_KERNEL_TRACE_API"); api && std::strcmp(api, "1") == 0)
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_RUNTIME);
  std::atexit(write_trace);
  return 1;
}
