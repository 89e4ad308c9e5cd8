// libFuzzer target: arbitrary bytes as a safetensors dump (8-byte header length, JSON header,
// tensor data), read whole. Seeds: tests/fuzz/run.sh converts the shipped dump.
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const moba::fuzz::InputFile f(data, size, ".safetensors");
  moba::fuzz::read_everything(f.path());
  return 0;
}
