#pragma once
// Element types of dumps and their conversions. Conversions to 16-bit types round to
// nearest, ties to even; NaN stays NaN (quiet), overflow becomes Inf, as IEEE 754 says.
#include <cstdint>
#include <string>

namespace moba {

enum class DType { f32, f16, bf16 };

const char* dtype_name(DType t);            // "float32", "float16", "bfloat16"
DType dtype_from_name(const std::string&);  // accepts the names above and f32/f16/bf16; throws UsageError
int dtype_size(DType t);                    // bytes per element

uint16_t f32_to_f16(float x);
float f16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float x);
float bf16_to_f32(uint16_t h);

// Round x to the nearest value representable in t (identity for f32).
float round_to(DType t, float x);

}  // namespace moba
