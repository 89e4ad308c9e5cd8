// libFuzzer target: the strict JSON parser of safetensors headers (core/io/json_mini.h), and
// the accessors a reader calls on what it returns.
#include <cstdint>
#include <string>

#include "core/io/json_mini.h"

namespace {
void walk(const moba::io::json::Value& v, int depth) {
  uint64_t u = 0;
  (void)v.as_u64(&u);
  (void)v.find("dtype");
  for (const auto& item : v.items) walk(item, depth + 1);
  for (const auto& m : v.members) walk(m.second, depth + 1);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  moba::io::json::Value v;
  std::string error;
  if (moba::io::json::parse(text, &v, &error)) walk(v, 0);
  else if (error.empty()) __builtin_trap();  // a failure must say why
  return 0;
}
