// libFuzzer target: the HDF5 dump reader's validation (schema v1, docs/dump-format.md). The
// bytes do not become an HDF5 file directly (that would fuzz libhdf5's own parser); they
// choose a well-formed HDF5 file's *content*: root attributes of any type or absent, layer
// group names, q/k/v/o/lse/planted datasets of any rank, shape and element type, the dtype and
// layout attributes, token_ids, and values including NaN and Inf. The reader must accept it
// or reject it with a typed error naming the file and field.
#include <fuzzer/FuzzedDataProvider.h>
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/io/h5_util.h"
#include "tests/fuzz/fuzz_common.h"

namespace {

void attr_string(hid_t obj, const char* name, const std::string& value) {
  const hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, value.size() + 1);
  const hid_t s = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
  if (a >= 0) H5Awrite(a, t, value.c_str()), H5Aclose(a);
  H5Sclose(s);
  H5Tclose(t);
}

void attr_number(hid_t obj, const char* name, hid_t file_type, double value) {
  const hid_t s = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(obj, name, file_type, s, H5P_DEFAULT, H5P_DEFAULT);
  if (a >= 0) H5Awrite(a, H5T_NATIVE_DOUBLE, &value), H5Aclose(a);
  H5Sclose(s);
}

// An attribute `name` of a fuzz-chosen type, or none.
void fuzz_attr(FuzzedDataProvider& in, hid_t obj, const char* name, const char* usual) {
  switch (in.ConsumeIntegralInRange(0, 5)) {
    case 0: break;  // absent
    case 1: attr_string(obj, name, usual); break;
    case 2: attr_string(obj, name, in.ConsumeRandomLengthString(12)); break;
    case 3: attr_number(obj, name, H5T_STD_I64LE, in.ConsumeIntegralInRange(-2, 3)); break;
    case 4: attr_number(obj, name, H5T_IEEE_F64LE, in.ConsumeFloatingPoint<double>()); break;
    default: attr_number(obj, name, H5T_STD_U8LE, in.ConsumeIntegral<uint8_t>()); break;
  }
}

void fuzz_dataset(FuzzedDataProvider& in, hid_t group, const char* name) {
  const int rank = in.ConsumeBool() ? 3 : in.ConsumeIntegralInRange(0, 4);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  hsize_t n = 1;
  for (auto& d : dims) n *= (d = in.ConsumeIntegralInRange<hsize_t>(0, 6));
  const int kind = in.ConsumeIntegralInRange(0, 6);
  const moba::h5::Id f16 = moba::h5::make_f16_type();  // HDF5 1.10 has no predefined half type
  const moba::h5::Id opaque(H5Tcreate(H5T_OPAQUE, 2), H5Tclose);
  const hid_t file_type = kind == 0   ? H5T_IEEE_F32LE
                          : kind == 1 ? f16.get()
                          : kind == 2 || kind == 3 ? H5T_STD_U16LE
                          : kind == 4 ? H5T_STD_I32LE
                          : kind == 5 ? H5T_IEEE_F64LE
                                      : opaque.get();
  const hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims.data(), nullptr);
  const hid_t ds = H5Dcreate2(group, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (ds >= 0) {
    if (kind == 2 || kind == 6 || in.ConsumeIntegralInRange(0, 7) == 0) fuzz_attr(in, ds, "dtype", "bfloat16");
    if (in.ConsumeIntegralInRange(0, 3) == 0) fuzz_attr(in, ds, "layout", "thd");
    // Values: raw fuzz bytes, so every bit pattern (NaN, Inf, subnormals) can appear.
    const size_t elem = kind == 5 ? 8 : kind == 0 || kind == 4 ? 4 : 2;
    std::vector<uint8_t> bytes = in.ConsumeBytes<uint8_t>(static_cast<size_t>(n) * elem);
    bytes.resize(static_cast<size_t>(n) * elem, 0);
    const hid_t mem_type = kind == 6 ? file_type : H5Dget_type(ds);
    if (n) H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data());
    if (kind != 6) H5Tclose(mem_type);
    H5Dclose(ds);
  }
  H5Sclose(space);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const moba::fuzz::InputFile f(nullptr, 0, ".h5");
  {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    const hid_t file = H5Fcreate(f.path().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return 0;
    fuzz_attr(in, file, "moba_dump_version", "1");
    if (in.ConsumeIntegralInRange(0, 7) != 0) attr_number(file, "moba_dump_version", H5T_STD_I64LE, 1);
    fuzz_attr(in, file, "model", "fuzz");
    fuzz_attr(in, file, "rope_applied", "1");
    const char* const layer_names[] = {"0", "1", "2", "7", "x", "-1", "01", ""};
    const hid_t layers = in.ConsumeIntegralInRange(0, 15) ? H5Gcreate2(file, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    const int n_layers = layers >= 0 ? in.ConsumeIntegralInRange(0, 3) : 0;
    for (int l = 0; l < n_layers; ++l) {
      const hid_t g = H5Gcreate2(layers, layer_names[in.ConsumeIntegralInRange(0, 7)], H5P_DEFAULT, H5P_DEFAULT,
                                 H5P_DEFAULT);
      if (g < 0) continue;
      for (const char* t : {"q", "k", "v"})
        if (in.ConsumeIntegralInRange(0, 15) != 0) fuzz_dataset(in, g, t);
      for (const char* t : {"o", "lse", "planted"})
        if (in.ConsumeIntegralInRange(0, 3) == 0) fuzz_dataset(in, g, t);
      H5Gclose(g);
    }
    if (layers >= 0) H5Gclose(layers);
    if (in.ConsumeIntegralInRange(0, 3) == 0) fuzz_dataset(in, file, "token_ids");
    H5Fclose(file);
  }
  moba::fuzz::read_everything(f.path());
  return 0;
}
