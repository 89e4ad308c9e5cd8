// Bounded analysis output (DESIGN.md §8b): the keep rule of per-position data
// (analysis/position_keep.h), the stored integer width of selections and its round trip
// (core/h5_output.h write_int, core/h5_input.h read_i32), analysis.h5 groups without
// arrays / selections as ResultsFile and the viewer's PositionView see them, and what
// `moba analyze` records in run.json and analysis.h5.
#include <sys/wait.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "analysis/position_keep.h"
#include "analysis/results_file.h"
#include "analysis/results_schema.h"
#include "core/errors.h"
#include "core/h5_input.h"
#include "core/h5_output.h"
#include "test_io_util.h"

using namespace moba;
using namespace moba::analysis;
using moba::io_test::ScratchDir;
using moba::io_test::exit_status;
using moba::io_test::read_text;

namespace {

// One configuration's arrays as analyze fills them: query t selects its current block and
// block 0, metrics ramp with t.
PositionArrays make_arrays(const ConfigKey& key, int64_t T) {
  PositionArrays a;
  a.key = key;
  a.selected.assign(static_cast<size_t>(T * key.top_k), -1);
  for (int64_t t = 0; t < T; ++t) {
    const auto c = static_cast<int32_t>(t / key.block_size);
    a.selected[static_cast<size_t>(t * key.top_k)] = 0;
    if (c > 0 && key.top_k > 1) a.selected[static_cast<size_t>(t * key.top_k + 1)] = c;
  }
  for (const auto& m : position_metrics()) {
    auto& v = a.metric(m.metric);
    v.resize(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) v[static_cast<size_t>(t)] = static_cast<float>(t) / static_cast<float>(T);
  }
  a.choice.assign(static_cast<size_t>(T), 1);
  return a;
}

std::vector<BucketRow> make_buckets(const ConfigKey& key, int64_t T, int n) {
  std::vector<BucketRow> rows;
  for (int i = 0; i < n; ++i) {
    BucketRow r;
    r.key = key;
    r.t_begin = T * i / n;
    r.t_end = T * (i + 1) / n;
    r.n_choice = r.t_end - r.t_begin;
    r.coverage = 0.5 + 0.01 * i;
    r.kl = 0.1 * i;
    r.block_recall = i == 0 ? std::nan("") : 0.25;
    r.token_recall = 0.75;
    r.output_rel_err = 0.125;
    rows.push_back(r);
  }
  return rows;
}

}  // namespace

TEST_CASE("PositionKeep: levels, kept set and the CLI flags", "[keep]") {
  const ConfigKey h0{0, 0, 64, 8, RouterKind::moba}, h3{1, 3, 128, 4, RouterKind::oracle};
  SECTION("the struct's default keeps everything") {
    const PositionKeep k;
    CHECK(k.level == PositionLevel::all);
    CHECK((k.keeps_arrays(h0) && k.keeps_selection(h0) && k.keeps_arrays(h3) && k.keeps_selection(h3)));
  }
  SECTION("moba analyze's default: the first analysed head of every layer, everything else bucket curves") {
    PositionKeep k = resolve_keep_flags(KeepFlags{}, {});
    CHECK(k.level == PositionLevel::selected);
    CHECK(k.heads == std::vector<int64_t>{0});
    CHECK(k.budget_bytes == kDefaultKeepBudget);
    // A budget not yet decided admits nothing.
    CHECK_FALSE(k.keeps_arrays(h0));
    apply_keep_budget(&k, 1000, {{64, 8}, {128, 4}}, {RouterKind::moba, RouterKind::oracle});
    CHECK((k.keeps_arrays(h0) && k.keeps_selection(h0)));
    CHECK_FALSE(k.keeps_arrays(h3));
    CHECK_FALSE(k.keeps_selection(h3));
    CHECK_THAT(k.describe(), Catch::Contains("head 0 of every layer") &&
                                 Catch::Contains("4 of 4 configurations within the 256 MiB per-head budget"));
    // With --heads 5,3 the first analysed head is 3.
    CHECK(resolve_keep_flags(KeepFlags{}, {5, 3}).heads == std::vector<int64_t>{3});
    // Naming the kept set: no budget.
    KeepFlags named;
    named.heads = {"0"};
    CHECK(resolve_keep_flags(named, {}).budget_bytes == 0);
    CHECK(resolve_keep_flags(named, {}).keeps_selection(h0));
  }
  SECTION("levels") {
    KeepFlags f;
    f.positions = "metrics";
    PositionKeep m = resolve_keep_flags(f, {});
    CHECK(m.budget_bytes == kDefaultKeepBudget);  // the default kept set at level metrics too
    apply_keep_budget(&m, 1000, {{64, 8}}, {RouterKind::moba});
    CHECK(m.keeps_arrays(h0));
    CHECK_FALSE(m.keeps_selection(h0));
    f.positions = "none";
    const PositionKeep n = resolve_keep_flags(f, {});
    CHECK_FALSE(n.keeps_arrays(h0));
    CHECK_FALSE(n.keeps_selection(h0));
    f.positions = "all";
    const PositionKeep a = resolve_keep_flags(f, {});
    CHECK((a.keeps_arrays(h3) && a.keeps_selection(h3)));
    CHECK(position_level_from_name("selected") == PositionLevel::selected);
    CHECK_THROWS_AS(position_level_from_name("some"), UsageError);
  }
  SECTION("lists of heads, configurations (B<b>_k<k> or B<b>) and routers") {
    KeepFlags f;
    f.heads = {"0", "3"};
    f.configs = {"B64_k8", "B128"};
    f.routers = {"oracle", "moba"};
    const PositionKeep k = resolve_keep_flags(f, {});
    CHECK(k.keeps_selection(h0));
    CHECK(k.keeps_selection(h3));  // B128: every k
    CHECK_FALSE(k.keeps_arrays({0, 0, 64, 4, RouterKind::moba}));   // B64 only at k = 8
    CHECK_FALSE(k.keeps_arrays({0, 1, 64, 8, RouterKind::moba}));   // head 1
    CHECK_FALSE(k.keeps_arrays({0, 0, 64, 8, RouterKind::moba_kconv}));
    CHECK(parse_keep_config("B64_k8") == std::pair<int64_t, int>{64, 8});
    CHECK(parse_keep_config("B128") == std::pair<int64_t, int>{128, 0});
    CHECK(keep_config_name({128, 0}) == "B128");
    CHECK_THROWS_AS(parse_keep_config("64_k8"), UsageError);
    CHECK_THROWS_AS(parse_keep_config("B0"), UsageError);
    f = KeepFlags{};
    f.heads = {"all"};
    CHECK(resolve_keep_flags(f, {}).keeps_arrays(h3));
  }
  SECTION("usage errors") {
    KeepFlags f;
    f.positions = "all";
    f.heads = {"3"};
    CHECK_THROWS_AS(resolve_keep_flags(f, {}), UsageError);  // nothing for --keep-heads to choose
    f = KeepFlags{};
    f.heads = {"x"};
    CHECK_THROWS_AS(resolve_keep_flags(f, {}), UsageError);
    f.heads = {"2"};
    CHECK_THROWS_AS(resolve_keep_flags(f, {0, 1}), UsageError);  // head 2 is not analysed
    f = KeepFlags{};
    f.routers = {"nope"};
    CHECK_THROWS_AS(resolve_keep_flags(f, {}), UsageError);
  }
}

TEST_CASE("Selections: the smallest integer width, stored compressed, read back as int32", "[keep][h5output]") {
  CHECK(int_bits_for(-1, 127) == 8);
  CHECK(int_bits_for(-1, 128) == 16);
  CHECK(int_bits_for(-1, 32767) == 16);
  CHECK(int_bits_for(-1, 32768) == 32);
  CHECK(int_bits_for(0, int64_t(1) << 31) == 0);
  CHECK(selection_bits(1) == 8);
  CHECK(selection_bits(128) == 8);      // indices 0 .. 127
  CHECK(selection_bits(129) == 16);
  CHECK(selection_bits(32768) == 16);
  CHECK(selection_bits(32769) == 32);

  ScratchDir dir("keep_width");
  const std::string path = dir.file("w.h5");
  const int64_t rows = 1000;  // several chunks at 2 columns
  std::vector<int32_t> v8, v16, v32;
  for (int64_t i = 0; i < rows * 2; ++i) {
    const bool pad = i % 7 == 0;
    v8.push_back(pad ? -1 : static_cast<int32_t>(i % 128));
    v16.push_back(pad ? -1 : static_cast<int32_t>(i * 37 % 32768));
    v32.push_back(pad ? -1 : static_cast<int32_t>(i * 100003));
  }
  {
    H5Output o(path);
    o.write_int("/s8", {rows, 2}, v8.data(), 8, compressed_storage(2));
    o.write_int("/s16", {rows, 2}, v16.data(), 16, compressed_storage(2));
    o.write_int("/s32", {rows, 2}, v32.data(), 32, compressed_storage(2));
    o.write_i32("/plain", {rows, 2}, v32.data());  // files before keep rules: contiguous int32
    H5Storage small;
    small.chunk_rows = 3;
    small.deflate = 9;
    const std::vector<float> f{1.5f, -2.0f, std::nanf(""), 4.0f, 5.0f};
    o.write_f32("/f", {5}, f.data(), small);
    const std::vector<int32_t> empty;
    o.write_int("/empty", {0, 2}, empty.data(), 8, compressed_storage(2));  // zero rows: contiguous
    CHECK_THROWS_AS(o.write_int("/bad", {1, 2}, std::vector<int32_t>{0, 128}.data(), 8), std::logic_error);
    CHECK_THROWS_AS(o.write_int("/bad", {1, 2}, std::vector<int32_t>{0, 1}.data(), 12), std::logic_error);
    o.commit();
  }
  const H5Input in(path);
  CHECK(in.dataset_info("/s8").dtype == "int8");
  CHECK(in.dataset_info("/s16").dtype == "int16");
  CHECK(in.dataset_info("/s32").dtype == "int32");
  std::vector<int64_t> shape;
  CHECK(in.read_i32("/s8", &shape) == v8);
  CHECK(shape == std::vector<int64_t>{rows, 2});
  CHECK(in.read_i32("/s16") == v16);
  CHECK(in.read_i32("/s32") == v32);
  CHECK(in.read_i32("/plain") == v32);
  const std::vector<float> f = in.read_f32("/f");
  REQUIRE(f.size() == 5);
  CHECK((f[0] == 1.5f && f[1] == -2.0f && std::isnan(f[2]) && f[4] == 5.0f));
  CHECK(in.read_i32("/empty").empty());
}

TEST_CASE("H5Output::write_batch: chunks compressed beside the lock read back as written", "[keep][h5output]") {
  ScratchDir dir("keep_batch");
  const std::string path = dir.file("b.h5");
  const int64_t rows = 70001;  // compressed_storage(1): chunks of 65536 rows, the second partial
  std::vector<int32_t> v16(rows), v8(rows * 3);
  std::vector<float> f(rows * 2);
  for (int64_t i = 0; i < rows; ++i) v16[i] = static_cast<int32_t>(i % 65536) - 32768;
  for (int64_t i = 0; i < rows * 3; ++i) v8[i] = static_cast<int32_t>(i * 7 % 256) - 128;
  for (int64_t i = 0; i < rows * 2; ++i) f[i] = i % 5 == 0 ? -0.0f : std::ldexp(static_cast<float>(i), -7);
  {
    H5Output o(path);
    using Item = H5Output::Item;
    o.write_batch({Item::ints("/a/i16", {rows}, v16.data(), 16, compressed_storage(1)),
                   Item::ints("/a/i8", {rows, 3}, v8.data(), 8, compressed_storage(3)),
                   Item::floats("/b/f", {rows, 2}, f.data(), compressed_storage(2)),
                   Item::floats("/b/plain", {rows, 2}, f.data()),
                   Item::floats("/b/empty", {0}, nullptr, compressed_storage(1))});
    Item both = Item::floats("/c", {1}, f.data());
    both.i32 = v16.data();
    CHECK_THROWS_AS(o.write_batch({both}), std::logic_error);
    CHECK_THROWS_AS(o.write_batch({Item::floats("/c", {1}, nullptr)}), std::logic_error);
    CHECK_THROWS_AS(o.write_batch({Item::ints("/c", {1}, std::vector<int32_t>{300}.data(), 8)}), std::logic_error);
    o.commit();
  }
  const H5Input in(path);
  CHECK(in.dataset_info("/a/i16").dtype == "int16");
  CHECK(in.dataset_info("/a/i8").dtype == "int8");
  std::vector<int64_t> shape;
  CHECK(in.read_i32("/a/i16", &shape) == v16);
  CHECK(shape == std::vector<int64_t>{rows});
  CHECK(in.read_i32("/a/i8") == v8);
  const std::vector<float> g = in.read_f32("/b/f", &shape);
  CHECK(shape == std::vector<int64_t>{rows, 2});
  REQUIRE(g.size() == f.size());
  CHECK(std::memcmp(g.data(), f.data(), f.size() * sizeof(float)) == 0);  // bit for bit, -0 included
  CHECK(in.read_f32("/b/plain") == f);
  CHECK(in.dataset_info("/b/empty").dtype == "float32");
  CHECK(in.read_f32("/b/empty").empty());
}

TEST_CASE("analysis.h5 levels: ResultsFile and the viewer's PositionView without arrays or selections", "[keep][results]") {
  ScratchDir dir("keep_levels");
  const int64_t T = 300;  // B = 2: 150 blocks, selections stored as int16
  const ConfigKey full{0, 0, 2, 2, RouterKind::moba}, full_o = full.with_router(RouterKind::oracle);
  const ConfigKey none{0, 5, 2, 2, RouterKind::moba}, none_o = none.with_router(RouterKind::oracle);
  const ConfigKey metrics_only{0, 6, 2, 2, RouterKind::moba};
  const ConfigKey router_only{0, 7, 2, 2, RouterKind::moba}, router_only_o = router_only.with_router(RouterKind::oracle);
  {
    H5Output h5(dir.file("analysis.h5"));
    struct Put {
      ConfigKey key;
      bool arrays, selection;
    };
    const std::vector<Put> puts{{full, true, true},          {full_o, true, true},         {none, false, false},
                                {none_o, false, false},      {metrics_only, true, false}, {router_only, true, true},
                                {router_only_o, false, false}};
    // Each head's tables (analyze's layout), then the kept arrays.
    for (const int64_t head : {0, 5, 6, 7}) {
      std::vector<SummaryRow> rows;
      std::vector<BucketRow> buckets;
      for (const Put& p : puts) {
        if (p.key.head != head) continue;
        SummaryRow row;
        row.key = p.key;
        row.set(SummaryColumn::coverage_mean, 0.5);
        rows.push_back(row);
        const std::vector<BucketRow> b = make_buckets(p.key, T, 4);
        buckets.insert(buckets.end(), b.begin(), b.end());
      }
      write_head_tables(h5, rows, {RouterKind::moba, RouterKind::oracle}, buckets.data(), 4, nullptr, 0);
    }
    for (const Put& p : puts) write_kept_arrays(h5, make_arrays(p.key, T), T, p.arrays, p.selection);
    h5.set_string("/", kAttrPositionsRule, "the test's rule");
    h5.commit();
  }
  const ResultsFile f(dir.dir.string());
  REQUIRE(f.configs().size() == 7);  // every table row, kept or not
  CHECK(f.keep_rule() == "the test's rule");
  {
    const H5Input in(f.h5_path());
    CHECK(in.dataset_info(selected_path(full)).dtype == "int16");
  }

  const ResultArrays a_full = f.load(full);
  CHECK(a_full.has_selection());
  CHECK(a_full.selected == make_arrays(full, T).selected);
  CHECK(a_full.metrics.size() == position_metrics().size());
  CHECK(a_full.n_tokens == T);
  REQUIRE(a_full.bucket_curve("coverage"));
  CHECK(a_full.bucket_curve("coverage")->edges == std::vector<int64_t>{0, 75, 150, 225, 300});
  CHECK(a_full.bucket_curve("coverage")->mean[2] == Approx(0.52));
  CHECK(std::isnan(a_full.bucket_curve("block_recall")->mean[0]));
  CHECK(a_full.bucket_n_choice == std::vector<int64_t>{75, 75, 75, 75});
  CHECK(f.missing_text(full).empty());

  const PositionView v_full = load_position_view(f, full);
  CHECK(v_full.has_mask);
  CHECK(v_full.mask.with_oracle);
  CHECK(v_full.missing.empty());

  // Nothing per position: bucket curves and summary values only; the view says so.
  const StoredLevels st = f.stored(none);
  CHECK((!st.selection && !st.metrics && st.buckets));
  const PositionView v_none = load_position_view(f, none);
  CHECK_FALSE(v_none.has_mask);
  CHECK(v_none.has_oracle);
  CHECK(v_none.router.n_tokens == T);
  CHECK(v_none.router.n_blocks == 150);
  CHECK(v_none.router.metrics.empty());
  CHECK(v_none.router.selected.empty());
  CHECK(v_none.router.summary_value("coverage_mean") == 0.5);
  REQUIRE(v_none.router.bucket_curve("kl"));
  CHECK(v_none.router.bucket_curve("kl")->mean[3] == Approx(0.3));
  CHECK_THAT(v_none.missing, Catch::Contains("not kept") && Catch::Contains("--positions all") &&
                                 Catch::Contains("--keep-heads 5") && Catch::Contains("B2_k2") &&
                                 Catch::Contains("the test's rule"));

  // Metric arrays without the selection.
  const PositionView v_metrics = load_position_view(f, metrics_only);
  CHECK_FALSE(v_metrics.has_mask);
  CHECK(v_metrics.router.metric("coverage"));
  CHECK(v_metrics.router.n_tokens == T);
  CHECK_THAT(v_metrics.missing, Catch::Contains("--positions selected"));

  // The router's selection without the oracle's: a mask without comparison.
  const PositionView v_router = load_position_view(f, router_only);
  CHECK(v_router.has_mask);
  CHECK(v_router.has_oracle);
  CHECK_FALSE(v_router.mask.with_oracle);
  CHECK(v_router.oracle.metrics.empty());
}

TEST_CASE("moba analyze: the keep rule in analysis.h5, run.json and moba info", "[keep][cli]") {
  ScratchDir dir("keep_cli");
  const std::string dump = dir.file("synth.h5"), out = dir.file("ana"), all = dir.file("all");
  const std::string bin = MOBA_BINARY;
  REQUIRE(exit_status(bin + " synth --out " + dump + " --seed 3 --tokens 512 --heads 4 --kv-heads 2 --head-dim 32 " +
                      "--min-distance 64 --quiet > /dev/null") == 0);
  const std::string common = " --block-sizes 16,32 --top-k 2,4 --routers moba,oracle --quiet > /dev/null 2>&1";
  REQUIRE(exit_status(bin + " analyze " + dump + " --out " + out + " --keep-heads 1,3 --keep-configs B32" + common) == 0);
  REQUIRE(exit_status(bin + " analyze " + dump + " --out " + all + " --positions all" + common) == 0);
  // Usage errors: exit 2.
  CHECK(exit_status(bin + " analyze " + dump + " --out " + dir.file("x") + " --positions all --keep-heads 1" + common) == 2);
  CHECK(exit_status(bin + " analyze " + dump + " --out " + dir.file("x") + " --keep-configs B64_k2" + common) == 2);
  CHECK(exit_status(bin + " analyze " + dump + " --out " + dir.file("x") + " --positions some" + common) == 2);

  // 4 heads x 4 (B, k) x 2 routers = 32 configurations; kept: heads 1, 3 x B32 (k 2, 4) x 2 routers = 8.
  const ResultsFile f(out);
  CHECK(f.configs().size() == 32);
  int with_sel = 0, with_arrays = 0;
  for (size_t i = 0; i < f.configs().size(); ++i) {
    const ConfigKey& k = f.configs()[i];
    const StoredLevels& st = f.stored_levels()[i];
    const bool kept = (k.head == 1 || k.head == 3) && k.block_size == 32;
    CHECK(st.selection == kept);
    CHECK(st.metrics == kept);
    CHECK(st.buckets);
    with_sel += st.selection ? 1 : 0;
    with_arrays += st.metrics ? 1 : 0;
  }
  CHECK((with_sel == 8 && with_arrays == 8));
  {
    const H5Input in(f.h5_path());
    CHECK(in.attribute("/", "positions") == std::optional<std::string>("selected"));
    CHECK(in.attribute_number("/", "n_configurations") == std::optional<double>(32));
    CHECK(in.attribute_number("/", "n_with_arrays") == std::optional<double>(8));
    CHECK(in.attribute_number("/", "n_with_selection") == std::optional<double>(8));
    CHECK(in.dataset_info(selected_path({0, 1, 32, 4, RouterKind::moba})).dtype == "int8");
  }
  // Kept arrays and every stored bucket curve equal the --positions all run's.
  const ResultsFile fa(all);
  const ResultArrays kept = f.load({0, 3, 32, 4, RouterKind::moba}), kept_all = fa.load({0, 3, 32, 4, RouterKind::moba});
  CHECK(kept.selected == kept_all.selected);
  CHECK(kept.metrics.size() == kept_all.metrics.size());
  const ResultArrays b = f.load({0, 2, 16, 2, RouterKind::oracle}), b_all = fa.load({0, 2, 16, 2, RouterKind::oracle});
  CHECK(b.metrics.empty());
  REQUIRE(b.bucket_curve("coverage"));
  CHECK(b.bucket_curve("coverage")->mean.size() == 16);
  for (size_t i = 0; i < 16; ++i) {
    const float x = b.bucket_curve("coverage")->mean[i], y = b_all.bucket_curve("coverage")->mean[i];
    CHECK(((std::isnan(x) && std::isnan(y)) || x == y));
  }

  const std::string run = read_text(out + "/run.json");
  CHECK_THAT(run, Catch::Contains("\"kept\": {\"positions\": \"selected\", \"keep_heads\": [1, 3], "
                                  "\"keep_configs\": [\"B32\"], \"keep_routers\": \"all\""));
  CHECK_THAT(run, Catch::Contains("\"n_configurations\": 32, \"n_with_arrays\": 8, \"n_with_selection\": 8"));
  CHECK_THAT(read_text(all + "/run.json"),
             Catch::Contains("\"positions\": \"all\"") && Catch::Contains("\"n_with_selection\": 32"));

  // moba info describes what the file keeps.
  const std::string info = dir.file("info.txt");
  REQUIRE(exit_status(bin + " info " + out + "/analysis.h5 > " + info) == 0);
  const std::string text = read_text(info);
  CHECK_THAT(text, Catch::Contains("32 configurations") && Catch::Contains("selections for 8 (int8)") &&
                       Catch::Contains("layer/head 0/1, 0/3") && Catch::Contains("heads 1,3 of every layer"));
}

TEST_CASE("PositionKeep: the default kept set's per-head byte budget", "[keep]") {
  const int64_t T = 1000;
  // One (configuration, router) pair: 8 float32 metric arrays and the uint8 choice flags per
  // position, plus the int32 selection at level selected.
  CHECK(position_bytes(T, 8, PositionLevel::selected) == T * 33 + T * 8 * 4);
  CHECK(position_bytes(T, 8, PositionLevel::all) == T * 33 + T * 8 * 4);
  CHECK(position_bytes(T, 8, PositionLevel::metrics) == T * 33);
  CHECK(position_bytes(T, 8, PositionLevel::none) == 0);

  // Plan order: B16_k8, B32_k4, B64_k2, B128_k1; per pair 65000, 49000, 41000, 37000 bytes.
  const std::vector<std::pair<int64_t, int>> configs{{16, 8}, {32, 4}, {64, 2}, {128, 1}};
  const std::vector<RouterKind> routers{RouterKind::moba, RouterKind::oracle};
  const auto with_budget = [&](int64_t budget) {
    PositionKeep k = resolve_keep_flags(KeepFlags{}, {});
    k.budget_bytes = budget;
    apply_keep_budget(&k, T, configs, routers);
    return k;
  };

  SECTION("smallest first, ties in plan order (configuration, then router), within the budget") {
    const PositionKeep k = with_budget(2 * 37000 + 2 * 41000 + 49000 + 48999);
    CHECK(k.admission.decided);
    CHECK(k.admission.n_candidates == 8);
    // B32_k4's oracle pair would pass the budget by one byte; B16_k8 is the largest.
    const std::vector<KeptPair> want{{32, 4, RouterKind::moba},
                                     {64, 2, RouterKind::moba},
                                     {64, 2, RouterKind::oracle},
                                     {128, 1, RouterKind::moba},
                                     {128, 1, RouterKind::oracle}};
    CHECK(k.admission.admitted == want);
    CHECK(k.admission.bytes == 2 * 37000 + 2 * 41000 + 49000);
    CHECK(kept_bytes_per_head(k, T, configs, routers) == k.admission.bytes);
    CHECK(k.keeps_selection({0, 0, 32, 4, RouterKind::moba}));
    CHECK_FALSE(k.keeps_arrays({0, 0, 32, 4, RouterKind::oracle}));
    CHECK_FALSE(k.keeps_arrays({0, 0, 16, 8, RouterKind::moba}));
    CHECK_THAT(k.describe(), Catch::Contains("5 of 8 configurations within the 248.0 KiB per-head budget") &&
                                 Catch::Contains("200.2 KiB kept per head"));
  }
  SECTION("every budget: the admitted pairs fit it and are no larger than any left out") {
    for (int64_t budget = 1; budget <= 450000; budget += 3001) {
      const PositionKeep k = with_budget(budget);
      CHECK(k.admission.bytes <= budget);
      int64_t largest_in = 0, smallest_out = INT64_MAX;
      for (const auto& [B, kk] : configs)
        for (const RouterKind r : routers) {
          const int64_t b = position_bytes(T, kk, PositionLevel::selected);
          if (k.keeps_arrays({0, 0, B, kk, r})) largest_in = std::max(largest_in, b);
          else smallest_out = std::min(smallest_out, b);
        }
      CHECK(largest_in <= smallest_out);
      if (smallest_out != INT64_MAX) CHECK(k.admission.bytes + smallest_out > budget);  // the next one does not fit
    }
    CHECK(with_budget(1).admission.admitted.empty());
    CHECK(with_budget(kDefaultKeepBudget).admission.admitted.size() == 8);  // a small plan fits whole
  }
  SECTION("the same pairs for every layer; only the kept head") {
    const PositionKeep k = with_budget(2 * 37000 + 2 * 41000);
    for (int layer = 0; layer < 4; ++layer)
      for (const auto& [B, kk] : configs)
        for (const RouterKind r : routers) {
          const bool admitted = kk <= 2;
          CHECK(k.keeps_arrays({layer, 0, B, kk, r}) == admitted);
          CHECK(k.keeps_selection({layer, 0, B, kk, r}) == admitted);
          CHECK_FALSE(k.keeps_arrays({layer, 1, B, kk, r}));
        }
  }
  SECTION("level metrics counts the metric arrays only") {
    KeepFlags f;
    f.positions = "metrics";
    PositionKeep k = resolve_keep_flags(f, {});
    k.budget_bytes = 8 * 33000;
    apply_keep_budget(&k, T, configs, routers);
    CHECK(k.admission.admitted.size() == 8);
    CHECK_FALSE(k.keeps_selection({0, 0, 16, 8, RouterKind::moba}));
  }
  SECTION("named sets, --positions all and none: no budget, kept as named") {
    for (const char* flag : {"heads", "configs", "routers"}) {
      KeepFlags f;
      if (std::string(flag) == "heads") f.heads = {"0"};
      if (std::string(flag) == "configs") f.configs = {"B16"};
      if (std::string(flag) == "routers") f.routers = {"moba"};
      PositionKeep k = resolve_keep_flags(f, {});
      CHECK(k.budget_bytes == 0);
      apply_keep_budget(&k, int64_t{1} << 20, configs, routers);  // nothing to decide
      CHECK_FALSE(k.admission.decided);
      CHECK(k.keeps_selection({0, 0, 16, 8, RouterKind::moba}));
      CHECK_THAT(k.describe(), !Catch::Contains("budget"));
    }
    KeepFlags f;
    f.heads = {"0"};
    // 2^20 tokens: a named set far above the default budget is kept whole (analyze notes it).
    const PositionKeep named = resolve_keep_flags(f, {});
    CHECK(kept_bytes_per_head(named, int64_t{1} << 20, configs, routers) > kDefaultKeepBudget);
    f = KeepFlags{};
    f.positions = "all";
    CHECK(resolve_keep_flags(f, {}).budget_bytes == 0);
    f.positions = "none";
    CHECK(resolve_keep_flags(f, {}).budget_bytes == 0);
    CHECK(kept_bytes_per_head(resolve_keep_flags(f, {}), T, configs, routers) == 0);
  }
  CHECK(format_bytes(kDefaultKeepBudget) == "256 MiB");
  CHECK(format_bytes(900) == "900 bytes");
  CHECK(format_bytes(int64_t{3} << 29) == "1.5 GiB");
}

TEST_CASE("moba analyze: the default kept set under a per-head budget", "[keep][cli]") {
  ScratchDir dir("keep_budget");
  const std::string dump = dir.file("synth.h5"), out = dir.file("ana"), named = dir.file("named");
  const std::string bin = MOBA_BINARY;
  REQUIRE(exit_status(bin + " synth --out " + dump + " --seed 4 --tokens 512 --heads 2 --kv-heads 1 --head-dim 32 " +
                      "--min-distance 64 --quiet > /dev/null") == 0);
  // 11 configurations (B64_k8 has k = n_blocks: left out) x 2 routers = 22 pairs per head; at
  // T = 512 a pair takes 512 x 33 + 512 x 4k bytes: 18944 (k = 1), 20992 (k = 2), 25088, 33280.
  const std::string common = " --block-sizes 16,32,64 --top-k 1,2,4,8 --routers moba,oracle --quiet > /dev/null 2>&1";
  const int64_t budget = 150000;  // the six k = 1 pairs (113664) and one k = 2 pair (134656)
  REQUIRE(exit_status(bin + " analyze " + dump + " --out " + out + " --keep-budget-bytes " + std::to_string(budget) +
                      common) == 0);
  const std::vector<std::pair<int64_t, int>> admitted_slots{{16, 1}, {32, 1}, {64, 1}};
  const auto admitted = [&](const ConfigKey& k) {
    if (k.head != 0) return false;
    if (k.block_size == 16 && k.top_k == 2) return k.router == RouterKind::moba;  // first in plan order
    return std::find(admitted_slots.begin(), admitted_slots.end(), std::make_pair(k.block_size, k.top_k)) !=
           admitted_slots.end();
  };
  const ResultsFile f(out);
  REQUIRE(f.configs().size() == 44);  // every configuration is listed, kept or not
  int n_kept = 0;
  for (size_t i = 0; i < f.configs().size(); ++i) {
    const ConfigKey& k = f.configs()[i];
    const StoredLevels& st = f.stored_levels()[i];
    INFO(k.name());
    CHECK(st.metrics == admitted(k));
    CHECK(st.selection == admitted(k));
    CHECK(st.buckets);
    CHECK(f.missing_text(k).empty() == admitted(k));
    n_kept += st.metrics ? 1 : 0;
  }
  CHECK(n_kept == 7);
  {
    const H5Input in(f.h5_path());
    CHECK(in.attribute_number("/", "n_configurations") == std::optional<double>(44));
    CHECK(in.attribute_number("/", "n_with_arrays") == std::optional<double>(7));
    CHECK(in.attribute_number("/", "n_with_selection") == std::optional<double>(7));
    CHECK(in.attribute_number("/", "positions_budget_bytes") == std::optional<double>(budget));
    CHECK(in.attribute_number("/", "positions_kept_bytes") == std::optional<double>(134656));
  }
  CHECK_THAT(f.keep_rule(), Catch::Contains("7 of 22 configurations within the 146.5 KiB per-head budget"));

  // The viewer's paths: a left-out configuration of the kept head lists with its summary and
  // bucket curves, and says what is missing and how to keep it; an admitted one has its mask.
  const ConfigKey left_out{0, 0, 16, 8, RouterKind::moba};
  const PositionView v = load_position_view(f, left_out);
  CHECK_FALSE(v.has_mask);
  CHECK(v.router.metrics.empty());
  REQUIRE(v.router.bucket_curve("coverage"));
  CHECK(v.router.bucket_curve("coverage")->mean.size() == 16);
  CHECK_THAT(v.missing, Catch::Contains("not kept") && Catch::Contains("--keep-configs B16_k8") &&
                            Catch::Contains("per-head budget"));
  const PositionView kept = load_position_view(f, {0, 0, 64, 1, RouterKind::moba});
  CHECK(kept.has_mask);
  CHECK(kept.mask.with_oracle);
  CHECK(kept.missing.empty());
  // B16_k2: the router's pair was admitted, the oracle's was not (the budget ran out between).
  const PositionView split = load_position_view(f, {0, 0, 16, 2, RouterKind::moba});
  CHECK(split.has_mask);
  CHECK_FALSE(split.mask.with_oracle);

  const std::string run = read_text(out + "/run.json");
  CHECK_THAT(run, Catch::Contains("\"budget_bytes_per_head\": 150000, \"budget_admitted\": [\"B16_k1/moba\", "
                                  "\"B16_k1/oracle\", \"B16_k2/moba\", \"B32_k1/moba\", \"B32_k1/oracle\", "
                                  "\"B64_k1/moba\", \"B64_k1/oracle\"], \"budget_candidates\": 22, "
                                  "\"kept_bytes_per_head\": 134656") &&
                      Catch::Contains("\"n_configurations\": 44, \"n_with_arrays\": 7, \"n_with_selection\": 7"));

  // The default budget keeps all 22 of head 0 here; a named set has no budget, and the test
  // budget is refused beside it.
  REQUIRE(exit_status(bin + " analyze " + dump + " --out " + named + common) == 0);
  CHECK(ResultsFile(named).stored({0, 0, 16, 8, RouterKind::oracle}).selection);
  CHECK_THAT(read_text(named + "/run.json"), Catch::Contains("\"n_with_arrays\": 22") &&
                                                 Catch::Contains("\"budget_bytes_per_head\": 268435456"));
  CHECK(exit_status(bin + " analyze " + dump + " --out " + dir.file("x") + " --keep-heads 0 --keep-budget-bytes 1" +
                    common) == 2);
  REQUIRE(exit_status(bin + " analyze " + dump + " --out " + named + " --keep-heads 0,1" + common) == 0);
  CHECK_THAT(read_text(named + "/run.json"), Catch::Contains("\"budget_bytes_per_head\": null") &&
                                                 Catch::Contains("\"n_with_arrays\": 44"));
}
