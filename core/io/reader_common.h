#pragma once
// Private to core/io: checks and conversions shared by the HDF5 and safetensors readers, so
// both formats reject the same bad inputs with the same messages.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dump.h"

namespace moba::io {

// What a reader found about one tensor before reading any values. dims are logical
// [n_heads, n_tokens, head_dim] (after any `thd` transposition), or [n_heads, n_tokens] for
// lse / planted; `name` is how the message names it ("/layers/0/q" or "layers.0.q").
struct TensorDesc {
  bool present = false;
  std::string name;
  std::vector<int64_t> dims;
  DType dtype = DType::f32;
};

// Validates one layer's tensors against schema v1 and returns its LayerInfo. Throws
// MissingFieldError (q, k or v absent), ShapeError (rank, empty dims, q/k/v disagree on
// n_tokens or head_dim, k/v disagree on heads, n_q_heads % n_kv_heads != 0, o/lse/planted
// shape), DTypeError (q, k, v of different element types).
LayerInfo check_layer(const std::string& file, int index, const TensorDesc& q, const TensorDesc& k,
                      const TensorDesc& v, const TensorDesc& o, const TensorDesc& lse,
                      const TensorDesc& planted);

// Checks every layer has the same n_tokens (one sequence per file) and token_ids, when
// present, has n_tokens entries. Sorts layers by index. Throws ShapeError / FormatError.
void check_dump(DumpInfo* info, int64_t token_ids_len);

// Values at or beyond this magnitude are refused like NaN and Inf: a dot product of two such
// vectors, or the square of a score (the SNR moments), leaves float32's range.
constexpr float kMaxAbsValue = 0x1p27f;

// Throws ValueError naming `dataset`, head and token of the first NaN, Inf or value beyond
// +-kMaxAbsValue among rows [token_begin, token_begin + n_rows) of head `head` (rows of head_dim floats).
void check_finite(const std::string& file, const std::string& dataset, const float* rows,
                  int64_t n_rows, int64_t head_dim, int64_t head, int64_t token_begin);

// Validates a head range request; throws UsageError naming file and dataset.
void check_head_range(const std::string& file, const std::string& dataset, int64_t head_begin,
                      int64_t n_heads, int64_t total_heads);

// Number of heads the tensor `kind` has in `layer`.
int64_t heads_of(const LayerInfo& layer, TensorKind kind);

// Widens n stored elements of type t (little-endian bytes) into floats.
void widen(DType t, const void* src, int64_t n, float* dst);

// Whether n 16-bit elements of type t (bf16 or f16) hold a NaN, an Inf or (bf16) a value beyond
// +-kMaxAbsValue, as a reduction that vectorises; check_finite on their widened values names the
// first one.
bool any_out_of_range16(DType t, const uint16_t* p, int64_t n);

// Parses a schema root field given as text (safetensors metadata): "1", "true", ...
// Throws FormatError naming the field.
int64_t parse_int_field(const std::string& file, const std::string& field, const std::string& text);

// Decimal layer name ("0", "12") to its index, or -1 when not a plain decimal.
int parse_layer_name(const std::string& s);

// Format-specific readers (created by open_dump after sniffing).
std::unique_ptr<DumpReader> open_hdf5_dump(const std::string& path);
std::unique_ptr<DumpReader> open_safetensors_dump(const std::string& path);

}  // namespace moba::io
