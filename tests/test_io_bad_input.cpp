// One test per bad-input class of issue 2 (HDF5 side; safetensors ones are in
// test_io_safetensors.cpp): each must raise the typed InputError whose message names the
// file and the offending field, and never crash.
#include "tests/test_io_util.h"

#include <cmath>

using namespace moba;
using namespace moba::io_test;

TEST_CASE("bad input: missing file", "[io][bad]") {
  ScratchDir dir("bad");
  const std::string path = dir.file("absent.h5");
  expect_input_error<FileNotFoundError>([&] { open_dump(path); }, path, "", "No such file");
  expect_input_error<FileNotFoundError>([&] { open_dump(dir.dir.string()); }, dir.dir.string(), "", "directory");
}

TEST_CASE("bad input: not HDF5 (or any dump format)", "[io][bad]") {
  ScratchDir dir("bad");
  const std::string text = dir.file("notes.h5"), empty = dir.file("empty.h5"), npz = dir.file("x.npz");
  write_bytes(text, {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '\n'});
  write_bytes(empty, {});
  write_bytes(npz, {'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0});
  expect_input_error<FormatError>([&] { open_dump(text); }, text, "", "not a dump");
  expect_input_error<FormatError>([&] { open_dump(empty); }, empty, "", "empty file");
  expect_input_error<FormatError>([&] { open_dump(npz); }, npz, "", "npz");
}

TEST_CASE("bad input: truncated HDF5 file", "[io][bad]") {
  ScratchDir dir("bad");
  const std::string good = dir.file("good.h5");
  write_dump(good, 2, 4, 2, 300, 32, DType::f32);
  std::ifstream in(good, std::ios::binary);
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (double fraction : {0.9, 0.5, 0.01}) {
    const std::string cut = dir.file("cut_" + std::to_string(int(fraction * 100)) + ".h5");
    write_bytes(cut, std::vector<unsigned char>(bytes.begin(), bytes.begin() + long(bytes.size() * fraction)));
    INFO("kept " << fraction << " of the file");
    expect_input_error<FormatError>([&] { open_and_read_all(cut); }, cut, "", "truncated");
  }
}

TEST_CASE("bad input: missing layer group, layers group or tensor", "[io][bad]") {
  ScratchDir dir("bad");
  const std::string no_layers = dir.file("no_layers.h5"), no_k = dir.file("no_k.h5"), good = dir.file("good.h5"),
                    bad_name = dir.file("bad_name.h5"), no_attr = dir.file("no_attr.h5");
  {
    H5Builder b(no_layers);
    b.schema_root().group("/other");
  }
  expect_input_error<MissingFieldError>([&] { open_dump(no_layers); }, no_layers, "/layers", "missing");
  {
    H5Builder b(no_k);
    b.schema_root().f32("/layers/0/q", {2, 4, 3}, std::vector<float>(24, 1.0f));
    b.f32("/layers/0/v", {1, 4, 3}, std::vector<float>(12, 1.0f));
  }
  expect_input_error<MissingFieldError>([&] { open_dump(no_k); }, no_k, "/layers/0/k", "missing");
  write_dump(good, 2, 2, 1, 8, 4, DType::f32);
  auto r = open_dump(good);
  expect_input_error<MissingFieldError>([&] { r->info().layer(7); }, good, "/layers/7", "no such layer");
  expect_input_error<MissingFieldError>([&] { r->read(7, TensorKind::q); }, good, "/layers/7");
  {
    H5Builder b(bad_name);
    b.schema_root().layer_f32(0, {2, 4, 3}, {1, 4, 3}, {1, 4, 3}).group("/layers/first");
  }
  expect_input_error<FormatError>([&] { open_dump(bad_name); }, bad_name, "/layers/first", "decimal");
  {
    H5Builder b(no_attr);
    b.attr_str("/", "model", "m").attr_int("/", "rope_applied", 1).layer_f32(0, {2, 4, 3}, {1, 4, 3}, {1, 4, 3});
  }
  expect_input_error<MissingFieldError>([&] { open_dump(no_attr); }, no_attr, "moba_dump_version", "missing");
}

TEST_CASE("bad input: wrong rank", "[io][bad]") {
  ScratchDir dir("bad");
  const std::string path = dir.file("rank.h5"), planted = dir.file("planted.h5");
  {
    H5Builder b(path);
    b.schema_root().layer_f32(0, {8, 3}, {1, 8, 3}, {1, 8, 3});
  }
  expect_input_error<ShapeError>([&] { open_dump(path); }, path, "/layers/0/q", "rank 2");
  {
    H5Builder b(planted);
    b.schema_root().layer_f32(0, {2, 8, 3}, {1, 8, 3}, {1, 8, 3});
    std::vector<int32_t> p(16, -1);
    b.dataset("/layers/0/planted", {16}, H5T_STD_I32LE, H5T_NATIVE_INT32, p.data());
  }
  expect_input_error<ShapeError>([&] { open_dump(planted); }, planted, "/layers/0/planted", "rank 1");
}

TEST_CASE("bad input: q/k/v disagree on n_tokens or head_dim", "[io][bad]") {
  ScratchDir dir("bad");
  const std::string tokens = dir.file("tokens.h5"), dim = dir.file("dim.h5"), heads = dir.file("heads.h5"),
                    layers = dir.file("layers.h5");
  {
    H5Builder b(tokens);
    b.schema_root().layer_f32(0, {2, 8, 4}, {1, 7, 4}, {1, 8, 4});
  }
  expect_input_error<ShapeError>([&] { open_dump(tokens); }, tokens, "/layers/0/k", "n_tokens 7");
  {
    H5Builder b(dim);
    b.schema_root().layer_f32(0, {2, 8, 4}, {1, 8, 4}, {1, 8, 5});
  }
  expect_input_error<ShapeError>([&] { open_dump(dim); }, dim, "/layers/0/v", "head_dim 5");
  {
    H5Builder b(heads);
    b.schema_root().layer_f32(0, {4, 8, 4}, {2, 8, 4}, {1, 8, 4});
  }
  expect_input_error<ShapeError>([&] { open_dump(heads); }, heads, "/layers/0/v", "n_kv_heads 1");
  {
    H5Builder b(layers);
    b.schema_root().layer_f32(0, {2, 8, 4}, {1, 8, 4}, {1, 8, 4}).layer_f32(1, {2, 9, 4}, {1, 9, 4}, {1, 9, 4});
  }
  expect_input_error<ShapeError>([&] { open_dump(layers); }, layers, "/layers/1", "one sequence per file");
}

TEST_CASE("bad input: n_q_heads not a multiple of n_kv_heads", "[io][bad]") {
  ScratchDir dir("bad");
  const std::string path = dir.file("gqa.h5");
  {
    H5Builder b(path);
    b.schema_root().layer_f32(0, {6, 8, 4}, {4, 8, 4}, {4, 8, 4});
  }
  expect_input_error<ShapeError>([&] { open_dump(path); }, path, "/layers/0/q", "not a multiple of n_kv_heads 4");
}

TEST_CASE("bad input: unknown or disallowed dtype", "[io][bad]") {
  ScratchDir dir("bad");
  const std::string f64 = dir.file("f64.h5"), u16 = dir.file("u16.h5"), attr = dir.file("attr.h5"),
                    mixed = dir.file("mixed.h5"), i32 = dir.file("i32.h5");
  const std::vector<double> d(2 * 8 * 4, 0.5);
  const std::vector<uint16_t> h(2 * 8 * 4, 0x3f80);
  const std::vector<int32_t> n(2 * 8 * 4, 1);
  {
    H5Builder b(f64);
    b.schema_root().layer_f32(0, {2, 8, 4}, {1, 8, 4}, {1, 8, 4});
    b.dataset("/layers/1/q", {2, 8, 4}, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, d.data());
  }
  expect_input_error<DTypeError>([&] { open_dump(f64); }, f64, "/layers/1/q", "float64");
  {
    H5Builder b(u16);
    b.schema_root().dataset("/layers/0/q", {2, 8, 4}, H5T_STD_U16LE, H5T_NATIVE_UINT16, h.data());
  }
  expect_input_error<DTypeError>([&] { open_dump(u16); }, u16, "/layers/0/q", "dtype=\"bfloat16\"");
  {
    H5Builder b(attr);
    b.schema_root().dataset("/layers/0/q", {2, 8, 4}, H5T_STD_U16LE, H5T_NATIVE_UINT16, h.data());
    b.attr_str("/layers/0/q", "dtype", "float8_e4m3");
  }
  expect_input_error<DTypeError>([&] { open_dump(attr); }, attr, "/layers/0/q", "float8_e4m3");
  {
    H5Builder b(mixed);
    b.schema_root().f32("/layers/0/q", {2, 8, 4}, std::vector<float>(64, 1.0f));
    b.dataset("/layers/0/k", {1, 8, 4}, H5T_STD_U16LE, H5T_NATIVE_UINT16, h.data()).attr_str("/layers/0/k", "dtype", "bfloat16");
    b.f32("/layers/0/v", {1, 8, 4}, std::vector<float>(32, 1.0f));
  }
  expect_input_error<DTypeError>([&] { open_dump(mixed); }, mixed, "/layers/0/k", "differs");
  {
    H5Builder b(i32);
    b.schema_root().dataset("/layers/0/q", {2, 8, 4}, H5T_STD_I32LE, H5T_NATIVE_INT32, n.data());
  }
  expect_input_error<DTypeError>([&] { open_dump(i32); }, i32, "/layers/0/q", "int32");
  // A dtype attribute that names another type than the stored one, bfloat16 (or its alias) on
  // float32 data included.
  for (const char* declared : {"bfloat16", "bf16", "float16"}) {
    const std::string lie = dir.file(std::string("lie_") + declared + ".h5");
    {
      H5Builder b(lie);
      b.schema_root().layer_f32(0, {2, 8, 4}, {1, 8, 4}, {1, 8, 4});
      b.attr_str("/layers/0/q", "dtype", declared);
    }
    expect_input_error<DTypeError>([&] { open_dump(lie); }, lie, "/layers/0/q", "contradicts");
  }
}

TEST_CASE("bad input: NaN or Inf values name head and token", "[io][bad]") {
  ScratchDir dir("bad");
  const std::string nan = dir.file("nan.h5"), inf = dir.file("inf.h5"), planted = dir.file("planted.h5");
  {
    std::vector<float> q(3 * 10 * 4, 0.5f);
    q[(1 * 10 + 7) * 4 + 2] = NAN;  // head 1, token 7, dim 2
    H5Builder b(nan);
    b.schema_root().f32("/layers/0/q", {3, 10, 4}, q);
    b.f32("/layers/0/k", {1, 10, 4}, std::vector<float>(40, 0.1f)).f32("/layers/0/v", {1, 10, 4}, std::vector<float>(40, 0.1f));
  }
  {
    auto r = open_dump(nan);  // metadata is fine; values are checked when read
    CHECK_NOTHROW(r->read(0, TensorKind::q, 0, 1));
    CHECK_NOTHROW(r->read(0, TensorKind::q, 2, 1));
    expect_input_error<ValueError>([&] { r->read(0, TensorKind::q); }, nan, "/layers/0/q", "NaN at head 1, token 7, dim 2");
  }
  {
    // Inf in a float16 v (0x7c00), written with the C API, thd layout: head and token are logical.
    hid_t f16 = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(f16, 15, 10, 5, 0, 10);
    H5Tset_size(f16, 2);
    H5Tset_ebias(f16, 15);
    std::vector<uint16_t> q(2 * 6 * 4, 0x3c00), k(1 * 6 * 4, 0x3c00), v(6 * 2 * 4, 0x3c00);
    v[(5 * 2 + 1) * 4 + 0] = 0x7c00;  // token 5, head 1 in [T, H, D]
    H5Builder b(inf);
    b.schema_root().dataset("/layers/0/q", {2, 6, 4}, f16, f16, q.data());
    b.dataset("/layers/0/k", {2, 6, 4}, f16, f16, q.data()).dataset("/layers/0/v", {6, 2, 4}, f16, f16, v.data());
    b.attr_str("/layers/0/v", "layout", "thd");
    H5Tclose(f16);
  }
  expect_input_error<ValueError>([&] { open_and_read_all(inf); }, inf, "/layers/0/v", "Inf at head 1, token 5");
  {
    // The 16-bit read the GPU analysis uses: the same error; q and k read fine.
    auto r = open_dump(inf);
    Raw16 raw;
    CHECK(r->read_raw16_into(0, TensorKind::q, 0, 2, &raw));
    CHECK(r->read_raw16_into(0, TensorKind::k, 0, 2, &raw));
    expect_input_error<ValueError>([&] { r->read_raw16_into(0, TensorKind::v, 0, 2, &raw); }, inf, "/layers/0/v",
                                   "Inf at head 1, token 5, dim 0");
  }
  {
    H5Builder b(planted);
    b.schema_root().layer_f32(0, {2, 8, 4}, {1, 8, 4}, {1, 8, 4});
    std::vector<int32_t> p(16, -1);
    p[9] = 8;  // == n_tokens: out of range
    b.dataset("/layers/0/planted", {2, 8}, H5T_STD_I32LE, H5T_NATIVE_INT32, p.data());
  }
  expect_input_error<ValueError>([&] { open_and_read_all(planted); }, planted, "/layers/0/planted", "value 8");
}

// Finite values too large for the scores (a dot product of two of them, or a score squared,
// overflows float32) are refused like NaN, in float32 and in bfloat16 (also on the 16-bit read);
// the largest float16 value (65504) and values just below 2^27 are fine.
TEST_CASE("bad input: values beyond 2^27 name head and token", "[io][bad]") {
  ScratchDir dir("bad");
  const std::string f32 = dir.file("big32.h5"), bf16 = dir.file("big16.h5"), ok = dir.file("ok.h5");
  {
    std::vector<float> k(1 * 10 * 4, 0.5f);
    k[(0 * 10 + 3) * 4 + 1] = -3e38f;  // head 0, token 3, dim 1
    H5Builder b(f32);
    b.schema_root().f32("/layers/0/q", {2, 10, 4}, std::vector<float>(80, 0.5f));
    b.f32("/layers/0/k", {1, 10, 4}, k).f32("/layers/0/v", {1, 10, 4}, std::vector<float>(40, 0.1f));
  }
  expect_input_error<ValueError>([&] { open_and_read_all(f32); }, f32, "/layers/0/k",
                                 "at head 0, token 3, dim 1: beyond +-2^27");
  {
    std::vector<uint16_t> q(2 * 6 * 4, 0x3f80);  // bf16 1.0
    q[(1 * 6 + 4) * 4 + 2] = 0x4d00;             // bf16 2^27: head 1, token 4, dim 2
    H5Builder b(bf16);
    b.schema_root().dataset("/layers/0/q", {2, 6, 4}, H5T_STD_U16LE, H5T_NATIVE_UINT16, q.data());
    b.attr_str("/layers/0/q", "dtype", "bfloat16");
    const std::vector<uint16_t> kv(1 * 6 * 4, 0x3f00);  // bf16 0.5
    for (const char* name : {"/layers/0/k", "/layers/0/v"})
      b.dataset(name, {1, 6, 4}, H5T_STD_U16LE, H5T_NATIVE_UINT16, kv.data()).attr_str(name, "dtype", "bfloat16");
  }
  expect_input_error<ValueError>([&] { open_and_read_all(bf16); }, bf16, "/layers/0/q",
                                 "value 134217728 at head 1, token 4, dim 2");
  {
    auto r = open_dump(bf16);
    Raw16 raw;
    expect_input_error<ValueError>([&] { r->read_raw16_into(0, TensorKind::q, 0, 2, &raw); }, bf16, "/layers/0/q",
                                   "at head 1, token 4, dim 2: beyond +-2^27");
  }
  {
    std::vector<float> q(2 * 6 * 4, 65504.0f);
    q[5] = 0x1p27f - 16.0f;  // the largest float32 below 2^27
    q[6] = -q[5];
    H5Builder b(ok);
    b.schema_root().f32("/layers/0/q", {2, 6, 4}, q);
    b.f32("/layers/0/k", {1, 6, 4}, std::vector<float>(24, 0.5f)).f32("/layers/0/v", {1, 6, 4}, std::vector<float>(24, 0.5f));
  }
  CHECK_NOTHROW(open_and_read_all(ok));
}

TEST_CASE("bad input: odd attributes", "[io][bad]") {
  ScratchDir dir("bad");
  const std::string version = dir.file("v2.h5"), rope = dir.file("rope.h5"), layout = dir.file("layout.h5");
  {
    H5Builder b(version);
    b.attr_int("/", "moba_dump_version", 2).attr_str("/", "model", "m").attr_int("/", "rope_applied", 1);
    b.layer_f32(0, {2, 8, 4}, {1, 8, 4}, {1, 8, 4});
  }
  expect_input_error<FormatError>([&] { open_dump(version); }, version, "moba_dump_version", "version 2");
  {
    H5Builder b(rope);
    b.schema_root("m", 3).layer_f32(0, {2, 8, 4}, {1, 8, 4}, {1, 8, 4});
  }
  expect_input_error<FormatError>([&] { open_dump(rope); }, rope, "rope_applied", "0 or 1");
  {
    H5Builder b(layout);
    b.schema_root().layer_f32(0, {2, 8, 4}, {1, 8, 4}, {1, 8, 4}).attr_str("/layers/0/q", "layout", "dth");
  }
  expect_input_error<FormatError>([&] { open_dump(layout); }, layout, "/layers/0/q", "dth");
}
