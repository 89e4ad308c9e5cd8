#pragma once
// A generic, atomic HDF5 output file for command results (route's `selected`, analyze's
// per-position metrics, ...). HDF5 itself stays inside core/io; callers see only this.
//
// Contract:
// - Everything is written to a temporary file beside `path`; commit() renames it over
//   `path`. An H5Output destroyed without commit() (an exception, an early return) removes
//   the temporary file: a failed command leaves no output behind.
// - Datasets are float32, float64 (written whole, uncompressed) or signed integers (int32 in
//   memory; stored as int8, int16 or int32), any rank >= 1, row-major, named by absolute
//   path ("/layers/0/selected");
//   missing groups are created on demand. A dataset may be written whole, or created first
//   and filled in runs of rows along axis 0 (e.g. one head at a time) so the caller never
//   holds all of it. Rows never written read back as 0.
// - Storage (H5Storage): contiguous by default; or chunked along axis 0 and compressed
//   (byte shuffle + deflate, lossless). Readers need nothing special: HDF5 decompresses and
//   widens integers on read (core/h5_input.h read_i32 reads every width).
// - Attributes (text, floating point, integer) attach to a group or dataset ("/" = root).
// - Not thread-safe per object; HDF5 calls are serialised process-wide inside core/io.
// Errors: FileNotFoundError when the output cannot be created (e.g. missing directory);
// OutputError naming file and dataset when HDF5 fails to write (a full disk); std::logic_error
// on misuse (unknown dataset, rows out of range, data after commit).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace moba {

// How one dataset is laid out on disk. chunk_rows = 0: contiguous, uncompressed (the
// default). chunk_rows > 0: chunks of min(chunk_rows, rows) rows along axis 0 (whole rows),
// deflated at `deflate` (1..9; 0 = chunked only) after a byte shuffle when `shuffle`. When
// the HDF5 library has no deflate filter the data is written uncompressed.
struct H5Storage {
  int64_t chunk_rows = 0;
  int deflate = 0;
  bool shuffle = true;
};
// Chunked + deflate level 4 with rows per chunk so that one chunk holds about 64 Ki elements
// of `row_elems` (prod(shape[1:])) each.
H5Storage compressed_storage(int64_t row_elems);
// The smallest stored width (8, 16 or 32 bits) of a signed integer holding [lo, hi]; 0 when
// the range does not fit int32.
int int_bits_for(int64_t lo, int64_t hi);

class H5Output {
 public:
  explicit H5Output(const std::string& path);
  ~H5Output();
  H5Output(const H5Output&) = delete;
  H5Output& operator=(const H5Output&) = delete;

  const std::string& path() const;

  // Whole datasets: data holds prod(shape) elements, row-major.
  void write_f32(const std::string& dataset, const std::vector<int64_t>& shape, const float* data,
                 const H5Storage& storage = {});
  void write_i32(const std::string& dataset, const std::vector<int64_t>& shape, const int32_t* data,
                 const H5Storage& storage = {});
  // float64, written whole and uncompressed (small tables whose values must read back bit for
  // bit, e.g. analyze's per-head summary table).
  void write_f64(const std::string& dataset, const std::vector<int64_t>& shape, const double* data);
  // Integers held as int32 in memory, stored as signed `stored_bits` (8, 16 or 32) integers.
  // std::logic_error when a value does not fit (nothing is clipped) or bits is another value.
  void write_int(const std::string& dataset, const std::vector<int64_t>& shape, const int32_t* data,
                 int stored_bits, const H5Storage& storage = {});

  // Several whole datasets at once (as write_f32 / write_int each). The chunks of the
  // compressed ones are prepared as HDF5's shuffle + deflate filters store them — in parallel,
  // before the library's lock is taken — and written as they are (direct chunk writes): the
  // datasets read back the same, and the lock is held for the writes only, one dataset's at a
  // time (other threads' HDF5 calls, e.g. the dump's reads, go between them).
  struct Item {
    std::string dataset;
    std::vector<int64_t> shape;
    bool is_f32 = false;
    const float* f32 = nullptr;    // is_f32: the values (null only when there are none)
    const int32_t* i32 = nullptr;  // otherwise: stored as signed stored_bits integers (8, 16, 32)
    int stored_bits = 32;
    H5Storage storage;
    int64_t elements() const;  // prod(shape): the values f32 / i32 point to
    static Item floats(std::string dataset, std::vector<int64_t> shape, const float* data, const H5Storage& storage = {}) {
      return Item{std::move(dataset), std::move(shape), true, data, nullptr, 32, storage};
    }
    static Item ints(std::string dataset, std::vector<int64_t> shape, const int32_t* data, int stored_bits,
                     const H5Storage& storage = {}) {
      return Item{std::move(dataset), std::move(shape), false, nullptr, data, stored_bits, storage};
    }
  };
  void write_batch(const std::vector<Item>& items);

  // Streaming: create, then fill rows [row_begin, row_begin + n_rows) of axis 0; `data`
  // holds n_rows * prod(shape[1:]) elements.
  void create_f32(const std::string& dataset, const std::vector<int64_t>& shape);
  void create_i32(const std::string& dataset, const std::vector<int64_t>& shape);
  void write_rows(const std::string& dataset, int64_t row_begin, int64_t n_rows, const float* data);
  void write_rows(const std::string& dataset, int64_t row_begin, int64_t n_rows, const int32_t* data);

  // Scalar attributes on the group or dataset `object` (created as a group if absent).
  void set_string(const std::string& object, const std::string& name, const std::string& value);
  void set_number(const std::string& object, const std::string& name, double value);
  void set_integer(const std::string& object, const std::string& name, int64_t value);
  // Several numbers on one object, opened once.
  void set_numbers(const std::string& object, const std::vector<std::pair<std::string, double>>& values);

  void commit();

 private:
  void check_fits(const Item& it) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True once an HDF5 write or close of an output has failed in this process (a full disk).
// HDF5 1.10 may then crash in its own clean-up at process exit (a file whose close failed);
// main() ends such a process without the library's exit handlers, the temporaries already
// removed by the writers' destructors.
bool hdf5_write_failed();

}  // namespace moba
