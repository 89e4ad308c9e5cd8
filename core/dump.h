#pragma once
// Dump schema v1 (DESIGN.md §2): readers for HDF5 and safetensors (and .npz), the HDF5
// writer, and the metadata both share. HDF5 is touched only inside core/io.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace moba {

enum class TensorKind { q, k, v, o };
const char* tensor_kind_name(TensorKind k);  // "q", "k", "v", "o"

struct LayerInfo {
  int index = 0;             // the L of /layers/L
  int64_t n_q_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t n_tokens = 0;
  int64_t head_dim = 0;
  DType dtype = DType::f32;  // element type of q (k and v are checked to match)
  bool has_o = false;
  bool has_lse = false;
  bool has_planted = false;  // synthetic ground truth /layers/L/planted [n_q_heads, n_tokens]
};

struct DumpInfo {
  std::string path;
  std::string format;        // "hdf5", "safetensors" or "npz"
  int64_t version = 1;       // moba_dump_version
  std::string model;
  std::string source;
  bool rope_applied = false;
  bool has_token_ids = false;
  std::vector<LayerInfo> layers;               // ascending by index
  std::map<std::string, std::string> attributes;  // other root attributes, as text (e.g. synth parameters)

  // Throws MissingFieldError naming the file and "/layers/L".
  const LayerInfo& layer(int index) const;
};

// True when every layer has the same heads, kv heads, head dim and dtype.
bool uniform_layers(const DumpInfo& info);

class JsonObject;
// Adds what `moba info --json` prints about a dump (file, format, version, model, source,
// rope_applied, has_token_ids, n_layers, layer_indices, n_tokens, the shape and dtype when
// uniform, layers [...], attributes {...}) to `o`; the sweep's provenance records the same.
void add_dump_info_json(const DumpInfo& info, JsonObject& o);

// A warning when the dump's shapes look token-major ([n_tokens, n_heads, head_dim]) read as
// head-major: more heads than tokens in some layer, which real dumps never have. Empty when
// nothing looks wrong. The text names the layer and the fix (layout = "thd").
std::string layout_warning(const DumpInfo& info);

// Reads one sequence's dump. Every read validates its slice: shape, and finite values
// (NaN/Inf raise ValueError naming the dataset, head and token). Reading heads
// [head_begin, head_begin + n_heads) of one tensor touches only that slice of the file.
class DumpReader {
 public:
  virtual ~DumpReader() = default;
  virtual const DumpInfo& info() const = 0;
  Tensor3 read(int layer, TensorKind kind, int64_t head_begin, int64_t n_heads);
  // The same into `out`, whose storage is reused where it is large enough (Tensor3::reshape):
  // a caller reading group after group keeps its buffers' pages mapped. On an exception `out`
  // holds no valid data.
  virtual void read_into(int layer, TensorKind kind, int64_t head_begin, int64_t n_heads, Tensor3* out) = 0;
  // 16-bit dumps (bf16, f16): the elements' bits as stored (little-endian values), heads
  // [head_begin, head_begin + n_heads) as [n_heads, n_tokens, head_dim] row-major into `out`
  // (storage reused where large enough), checked for NaN/Inf with read_into's errors. Returns
  // false, `out` untouched, where this reader or the tensor's encoding has no such path (f32
  // dumps, other formats): read_into then. The GPU analysis uploads these bits as they are
  // (half the bytes of floats, no widening on the host).
  virtual bool read_raw16_into(int layer, TensorKind kind, int64_t head_begin, int64_t n_heads, Raw16* out) {
    return false;
  }
  // Whole tensor (all heads).
  Tensor3 read(int layer, TensorKind kind);
  // Root `token_ids` [n_tokens]; empty when absent.
  virtual std::vector<int32_t> read_token_ids() = 0;
  // /layers/L/planted [n_q_heads, n_tokens] row-major, -1 where none; empty when absent.
  virtual std::vector<int32_t> read_planted(int layer) = 0;
};

// Opens by content (HDF5 signature, safetensors header, zip magic), not by extension.
// Throws FileNotFoundError / FormatError / ShapeError / DTypeError / MissingFieldError.
std::unique_ptr<DumpReader> open_dump(const std::string& path);

// Root metadata of a dump to write.
struct DumpMeta {
  std::string model;
  std::string source;
  bool rope_applied = true;
  std::map<std::string, double> numeric_attributes;     // extra root attributes (numbers)
  std::map<std::string, std::string> string_attributes; // extra root attributes (text)
};

// Writes HDF5 schema v1, chunked one head per chunk. Writes go to a temporary file beside
// the target, renamed over it by commit(); a writer destroyed without commit() removes the
// temporary file, so an interrupted or failed write leaves nothing behind.
class DumpWriter {
 public:
  DumpWriter(const std::string& path, const DumpMeta& meta);
  ~DumpWriter();
  DumpWriter(const DumpWriter&) = delete;
  DumpWriter& operator=(const DumpWriter&) = delete;

  // Stores t as `stored` (bf16 as uint16 with dtype="bfloat16"), at /layers/L/{q,k,v,o}.
  void write_tensor(int layer, TensorKind kind, const Tensor3& t, DType stored);
  // /layers/L/planted int32 [n_q_heads, n_tokens].
  void write_planted(int layer, int64_t n_q_heads, int64_t n_tokens, const std::vector<int32_t>& planted);
  void write_token_ids(const std::vector<int32_t>& ids);
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moba
