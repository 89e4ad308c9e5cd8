// The viewer's data path without the viewer: core's generic HDF5 reader (core/h5_input.h) and
// the analysis-side loader of `moba analyze --out DIR` (analysis/results_file.h). A
// hand-built analysis.h5 (H5Output, analyze's layout) checks every field; the real CLI on a
// tiny synth dump checks that what the viewer shows is what analyze wrote (summary.csv rows,
// buckets.csv means); bad inputs give typed errors naming the file.
#include <sys/wait.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

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
namespace fs = std::filesystem;

namespace {

constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();

// A selection row per query for block size B, top_k K: current block plus the `routed` blocks
// (ascending), -1 padded.
std::vector<int32_t> make_selection(int64_t T, int64_t B, int K, const std::vector<std::vector<int32_t>>& routed) {
  std::vector<int32_t> sel(static_cast<size_t>(T * K), -1);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int32_t> row = routed[static_cast<size_t>(t)];
    row.push_back(static_cast<int32_t>(t / B));
    std::sort(row.begin(), row.end());
    for (size_t i = 0; i < row.size(); ++i) sel[static_cast<size_t>(t * K) + i] = row[i];
  }
  return sel;
}

std::vector<float> ramp(int64_t T, float scale) {
  std::vector<float> v(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) v[static_cast<size_t>(t)] = scale * static_cast<float>(t);
  return v;
}

// Writes one configuration group the way analyze_group does.
void write_config(H5Output* o, int layer, int64_t head, int64_t B, int K, const std::string& router,
                  const std::vector<int32_t>& sel, int64_t T, float scale) {
  const std::string base = "/layers/" + std::to_string(layer) + "/heads/" + std::to_string(head) + "/B" +
                           std::to_string(B) + "_k" + std::to_string(K) + "/" + router;
  o->write_i32(base + "/selected", {T, K}, sel.data());
  for (const std::string& name : known_metric_names()) {
    std::vector<float> v = ramp(T, scale);
    if (name == "block_recall") v[0] = kNaNf;
    o->write_f32(base + "/" + name, {T}, v.data());
  }
  o->set_number(base, "coverage_mean", 0.5 * scale);
  o->set_number(base, "snr_emp", std::nan(""));
  o->set_number(base, "n_choice", 3);
}

}  // namespace

TEST_CASE("H5Input: listings, datasets, attributes and typed errors", "[results][h5input]") {
  ScratchDir dir("h5in");
  const std::string path = dir.file("x.h5");
  {
    H5Output o(path);
    const std::vector<int32_t> i{1, 2, 3, 4, 5, 6};
    const std::vector<float> f{0.5f, 1.5f, 2.5f};
    o.write_i32("/g/ints", {2, 3}, i.data());
    o.write_f32("/g/sub/floats", {3}, f.data());
    o.set_string("/", "tool", "moba");
    o.set_number("/g", "x", 0.25);
    o.set_integer("/g", "n", 7);
    o.commit();
  }
  const H5Input in(path);
  CHECK(in.list_groups("/") == std::vector<std::string>{"g"});
  CHECK(in.list_groups("/g") == std::vector<std::string>{"sub"});
  CHECK(in.list_datasets("/g") == std::vector<std::string>{"ints"});
  CHECK(in.has_group("/g/sub"));
  CHECK_FALSE(in.has_group("/g/ints"));
  CHECK(in.has_dataset("/g/ints"));
  CHECK_FALSE(in.has_dataset("/g/nope"));
  CHECK_FALSE(in.has_dataset("/g/ints/deeper"));
  std::vector<int64_t> shape;
  CHECK(in.read_i32("/g/ints", &shape) == std::vector<int32_t>{1, 2, 3, 4, 5, 6});
  CHECK(shape == std::vector<int64_t>{2, 3});
  CHECK(in.read_f32("/g/sub/floats", &shape) == std::vector<float>{0.5f, 1.5f, 2.5f});
  CHECK(in.dataset_info("/g/ints").dtype == "int32");
  CHECK(in.attribute("/", "tool").value() == "moba");
  CHECK(in.attribute_number("/g", "x").value() == 0.25);
  CHECK(in.attribute_number("/g", "n").value() == 7);
  CHECK_FALSE(in.attribute("/g", "absent").has_value());
  CHECK_FALSE(in.attribute_number("/", "tool").has_value());
  CHECK(in.attributes("/g").size() == 2);

  // Errors name the file and the dataset.
  try {
    in.read_i32("/g/sub/floats");
    FAIL("expected DTypeError");
  } catch (const DTypeError& e) {
    CHECK(e.file() == path);
    CHECK(e.field() == "/g/sub/floats");
  }
  try {
    in.read_f32("/g/missing");
    FAIL("expected MissingFieldError");
  } catch (const MissingFieldError& e) {
    CHECK(e.file() == path);
    CHECK(e.field() == "/g/missing");
  }
  CHECK_THROWS_AS(in.list_groups("/g/ints"), FormatError);
  CHECK_THROWS_AS(in.read_f32("/g"), FormatError);
}

TEST_CASE("ResultsFile: configurations, arrays, summary and comparison", "[results]") {
  ScratchDir dir("results");
  const int64_t T = 40, B = 8;
  const int K = 3;
  // moba routes {0, 1} at every query with a choice; the oracle routes {1, 2} once block 2
  // is routable (t >= 24), else {0, 1}.
  std::vector<std::vector<int32_t>> moba_routed(T), oracle_routed(T);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t routable = t / B;
    if (routable >= 2) moba_routed[t] = {0, 1};
    else if (routable == 1) moba_routed[t] = {0};
    oracle_routed[t] = routable >= 3 ? std::vector<int32_t>{1, 2} : moba_routed[t];
  }
  const auto moba_sel = make_selection(T, B, K, moba_routed);
  const auto oracle_sel = make_selection(T, B, K, oracle_routed);
  {
    H5Output o(dir.file("analysis.h5"));
    // Layers 10 and 2 (numeric order must win over HDF5's name order), a second slot.
    write_config(&o, 10, 0, B, K, "moba", moba_sel, T, 0.01f);
    write_config(&o, 2, 1, B, K, "oracle", oracle_sel, T, 0.02f);
    write_config(&o, 2, 1, B, K, "moba", moba_sel, T, 0.01f);
    const auto one = make_selection(T, 16, 1, std::vector<std::vector<int32_t>>(T));
    write_config(&o, 2, 1, 16, 1, "moba", one, T, 0.03f);
    const std::vector<int32_t> hist{1, 2, 3};
    o.write_i32("/layers/2/heads/1/B8/moba/signal_rank_hist", {3}, hist.data());  // not a configuration
    o.set_string("/", "dump", "tiny.h5");
    o.commit();
  }
  {
    std::ofstream csv(dir.file("summary.csv"));
    csv << "layer,head,scope,router,block_size,top_k,coverage_mean,snr_emp\n"
        << "2,1,head,moba,8,3,0.005,1.5\n"
        << "2,1,head,oracle,8,3,0.01,nan\n";
  }
  const ResultsFile f(dir.dir.string());
  CHECK(f.h5_path() == dir.file("analysis.h5"));
  CHECK(f.attributes().at("dump") == "tiny.h5");
  REQUIRE(f.configs().size() == 4);
  CHECK(f.configs()[0].layer == 2);
  CHECK(f.configs()[0].block_size == 8);
  CHECK(f.configs()[0].router == RouterKind::moba);
  CHECK(f.configs()[1].router == RouterKind::oracle);
  CHECK(f.configs()[2].block_size == 16);
  CHECK(f.configs()[3].layer == 10);
  CHECK(group_path(f.configs()[3]) == "/layers/10/heads/0/B8_k3/moba");
  CHECK(f.find({2, 1, 8, 3, RouterKind::oracle}) == &f.configs()[1]);
  CHECK(f.find({2, 1, 8, 4, RouterKind::oracle}) == nullptr);

  // The same directory opened through its .h5 path.
  const ResultsFile f2(dir.file("analysis.h5"));
  CHECK(f2.configs().size() == 4);
  CHECK(f2.has_summary());

  // Arrays and summary attributes.
  const ResultArrays a = f.load(*f.find({2, 1, 8, 3, RouterKind::moba}));
  CHECK(a.n_tokens == T);
  CHECK(a.n_blocks == 5);
  CHECK(a.selected == moba_sel);
  REQUIRE(a.metric("coverage"));
  CHECK(a.metric("coverage")->size() == static_cast<size_t>(T));
  CHECK((*a.metric("kl"))[10] == Approx(0.1));
  CHECK(std::isnan((*a.metric("block_recall"))[0]));
  CHECK(a.metric("nope") == nullptr);
  CHECK(a.metrics.size() == known_metric_names().size());
  CHECK(a.summary_value("coverage_mean") == Approx(0.005));
  CHECK(a.summary_value("n_choice") == 3);
  CHECK(std::isnan(a.summary_value("snr_emp")));
  CHECK(std::isnan(a.summary_value("absent")));

  // summary.csv rows.
  const SummaryTable& s = f.summary();
  REQUIRE(s.rows.size() == 2);
  CHECK(s.column("router") == 3);
  CHECK(s.column("absent") == -1);
  CHECK(s.rows[0].text[3] == "moba");
  CHECK(std::isnan(s.rows[0].value[3]));
  CHECK(s.rows[0].value[6] == 0.005);
  CHECK(std::isnan(s.rows[1].value[7]));

  // The position view pairs moba with the oracle of the same slot and classifies each cell.
  const PositionView v = load_position_view(f, *f.find({2, 1, 8, 3, RouterKind::moba}));
  REQUIRE(v.has_oracle);
  const MaskComparison& m = v.mask;
  CHECK(m.width == 2 * K);
  CHECK(m.cell_at(5, 0) == static_cast<int>(MaskCell::current));
  CHECK(m.cell_at(12, 0) == static_cast<int>(MaskCell::hit));       // t = 12: both route {0}
  CHECK(m.cell_at(30, 0) == static_cast<int>(MaskCell::false_pick));  // t = 30: moba {0,1}, oracle {1,2}
  CHECK(m.cell_at(30, 1) == static_cast<int>(MaskCell::hit));
  CHECK(m.cell_at(30, 2) == static_cast<int>(MaskCell::miss));
  CHECK(m.cell_at(30, 3) == static_cast<int>(MaskCell::current));
  CHECK(m.cell_at(30, 4) == 0);
  CHECK(m.n_hit[30] == 1);
  CHECK(m.n_false[30] == 1);
  CHECK(m.n_miss[30] == 1);
  // Queries 24..39 differ (16 of them); 8..23 agree (t < 8 has nothing routed).
  CHECK(m.total_false == 16);
  CHECK(m.total_miss == 16);
  CHECK(m.total_hit == 8 * 1 + 8 * 2 + 16 * 1);
  // The oracle shown as the router has nothing to compare with.
  const PositionView ov = load_position_view(f, *f.find({2, 1, 8, 3, RouterKind::oracle}));
  CHECK_FALSE(ov.has_oracle);
  CHECK(ov.mask.cell_at(30, 2) == static_cast<int>(MaskCell::selected));

  // Bucket means: over queries with a choice (t / B > k - 1, i.e. t >= 24), NaN when none.
  const BucketSeries b = bucket_means(*a.metric("coverage"), B, K, 4);
  CHECK(b.edges == std::vector<int64_t>{0, 10, 20, 30, 40});
  CHECK(std::isnan(b.mean[0]));
  CHECK(std::isnan(b.mean[1]));
  CHECK(b.mean[2] == Approx(0.01 * (24 + 29) / 2.0));
  CHECK(b.mean[3] == Approx(0.01 * (30 + 39) / 2.0));
}

TEST_CASE("ResultsFile: bad input is a typed error naming the file", "[results][bad_input]") {
  ScratchDir dir("results_bad");
  const std::string missing = dir.file("no_such_dir");
  try {
    const ResultsFile f(missing);
    FAIL("expected FileNotFoundError");
  } catch (const FileNotFoundError& e) {
    CHECK(e.file() == missing);
  }
  // A directory without analysis.h5.
  const std::string empty = dir.file("empty");
  fs::create_directories(empty);
  try {
    const ResultsFile f(empty);
    FAIL("expected FileNotFoundError");
  } catch (const FileNotFoundError& e) {
    CHECK(e.file() == (fs::path(empty) / "analysis.h5").string());
  }
  // Not HDF5.
  const std::string text_dir = dir.file("text");
  fs::create_directories(text_dir);
  std::ofstream(text_dir + "/analysis.h5") << "layer,head\n0,0\n";
  try {
    const ResultsFile f(text_dir);
    FAIL("expected FormatError");
  } catch (const FormatError& e) {
    CHECK(e.file() == text_dir + "/analysis.h5");
    CHECK_THAT(std::string(e.what()), Catch::Contains("not an HDF5 file"));
  }
  // HDF5, but not analyze's layout.
  const std::string other = dir.file("other.h5");
  {
    H5Output o(other);
    const std::vector<float> x{1};
    o.write_f32("/x", {1}, x.data());
    o.commit();
  }
  try {
    const ResultsFile f(other);
    FAIL("expected FormatError");
  } catch (const FormatError& e) {
    CHECK(e.file() == other);
    CHECK(e.field() == "/layers");
  }
  // A ragged summary.csv names its line.
  const std::string csv = dir.file("summary.csv");
  std::ofstream(csv) << "a,b,c\n1,2,3\n4,5\n";
  try {
    read_summary_csv(csv);
    FAIL("expected FormatError");
  } catch (const FormatError& e) {
    CHECK(e.file() == csv);
    CHECK(e.field() == "line 3");
  }
  // A selection that lies about its shape.
  const std::string lying = dir.file("lying");
  fs::create_directories(lying);
  {
    H5Output o(lying + "/analysis.h5");
    const std::vector<int32_t> sel(10, 0);
    o.write_i32("/layers/0/heads/0/B4_k2/moba/selected", {10}, sel.data());
    o.commit();
  }
  const ResultsFile f(lying);
  try {
    f.load(f.configs().at(0));
    FAIL("expected ShapeError");
  } catch (const ShapeError& e) {
    CHECK(e.file() == lying + "/analysis.h5");
    CHECK(e.field() == "/layers/0/heads/0/B4_k2/moba/selected");
  }
  // Head tables (layout 2) that lie, each named: 0 a summary table narrower than its
  // `columns`, 1 bucket means of another row count, 2 a configurations table of the wrong
  // width, 3 bucket counts of another bucket count, 4 a summary with a row more than the
  // configurations, 5 two-dimensional bucket edges; 6 a newer layout, 7 a layout-2 head
  // without its configurations table (FormatErrors).
  const auto lying_tables = [&](const std::string& name, int which) {
    const std::string d = dir.file(name);
    fs::create_directories(d);
    H5Output o(d + "/analysis.h5");
    const std::vector<int32_t> keys{4, 2, 0, 8, 2, 0};
    if (which != 7) {
      o.write_i32("/layers/0/heads/0/configurations", {which == 2 ? 3 : 2, which == 2 ? 2 : 3}, keys.data());
      o.set_string("/layers/0/heads/0/configurations", "routers", "moba");
    }
    const std::vector<double> summary(9, 0.5);
    o.write_f64("/layers/0/heads/0/summary", {which == 4 ? 3 : 2, 3}, summary.data());
    o.set_string("/layers/0/heads/0/summary", "columns",
                 which == 0 ? "coverage_mean,kl_mean" : "coverage_mean,kl_mean,n_choice");
    const std::vector<int32_t> edges{0, 8, 16}, n_choice{1, 2, 3, 4, 5, 6};
    const std::vector<float> means(which == 1 ? 10 : 20, 0.25f);
    o.write_i32("/layers/0/heads/0/bucket_edges", which == 5 ? std::vector<int64_t>{1, 3} : std::vector<int64_t>{3},
                edges.data());
    o.write_i32("/layers/0/heads/0/bucket_n_choice", {2, which == 3 ? 3 : 2}, n_choice.data());
    o.write_f32("/layers/0/heads/0/bucket_means", {which == 1 ? 1 : 2, 2, 5}, means.data());
    if (which >= 6) o.set_integer("/", kAttrLayout, which == 6 ? kLayoutVersion + 1 : kLayoutVersion);
    if (which == 7) {  // a head with a kept group but no tables
      const std::vector<float> cov(16, 0.5f);
      o.write_f32("/layers/0/heads/0/B4_k2/moba/coverage", {16}, cov.data());
    }
    o.commit();
    return d;
  };
  const std::vector<std::pair<int, std::string>> lies{
      {0, "/layers/0/heads/0/summary"},       {1, "/layers/0/heads/0/bucket_means"},
      {2, "/layers/0/heads/0/configurations"}, {3, "/layers/0/heads/0/bucket_n_choice"},
      {4, "/layers/0/heads/0/summary"},       {5, "/layers/0/heads/0/bucket_edges"},
      {6, "/@layout"},                         {7, "/layers/0/heads/0/configurations"}};
  for (const auto& [which, field] : lies) {
    INFO(which << " " << field);
    try {
      const ResultsFile t(lying_tables("tables" + std::to_string(which), which));
      REQUIRE(which < 6);
      REQUIRE(t.configs().size() == 2);
      t.load(t.configs().back());
      FAIL("expected ShapeError");
    } catch (const ShapeError& e) {
      CHECK(which < 6);
      CHECK(e.field() == field);
    } catch (const FormatError& e) {
      CHECK(which >= 6);
      CHECK(e.field() == field);
    }
  }
}

TEST_CASE("ResultsFile on a real `moba analyze` output matches its CSVs", "[results][cli]") {
  ScratchDir dir("results_cli");
  const std::string dump = dir.file("synth.h5"), out = dir.file("ana");
  const std::string bin = MOBA_BINARY;
  REQUIRE(exit_status(bin + " synth --out " + dump + " --seed 3 --tokens 512 --heads 2 --kv-heads 1 --head-dim 32 " +
                      "--min-distance 64 --quiet > /dev/null") == 0);
  REQUIRE(exit_status(bin + " analyze " + dump + " --block-sizes 16,32 --top-k 2,4 --routers moba,oracle --out " + out +
                      " --quiet > /dev/null") == 0);
  const ResultsFile f(out);
  // 1 layer x 2 heads x 2 B x 2 k x 2 routers.
  REQUIRE(f.configs().size() == 16);
  CHECK(f.attributes().count("git_commit") == 1);
  REQUIRE(f.has_summary());
  const SummaryTable& s = f.summary();
  CHECK(s.rows.size() == 16);
  for (const char* col : {"layer", "head", "router", "block_size", "top_k", "sparsity_mean", "coverage_mean",
                          "oracle_coverage_mean", "kl_mean", "block_recall_mean", "token_recall_mean",
                          "output_rel_err_mean", "snr_emp", "snr_theory", "p_fail_emp"})
    CHECK(s.column(col) >= 0);

  // Every summary.csv row's numbers are the group attributes the viewer shows.
  for (const auto& row : s.rows) {
    const ConfigKey* c = f.find({static_cast<int>(row.value[s.column("layer")]),
                                 static_cast<int64_t>(row.value[s.column("head")]),
                                 static_cast<int64_t>(row.value[s.column("block_size")]),
                                 static_cast<int>(row.value[s.column("top_k")]),
                                 router_from_name(row.text[s.column("router")])});
    REQUIRE(c != nullptr);
    const ResultArrays a = f.load(*c);
    CHECK(a.n_tokens == 512);
    // The default keep rule: per-position data for head 0 only, bucket curves for all.
    if (c->head == 0) {
      CHECK(a.selected.size() == static_cast<size_t>(512 * c->top_k));
      CHECK(f.missing_text(*c).empty());
    } else {
      CHECK(a.selected.empty());
      CHECK(a.metrics.empty());
      // The hint is a command that works: --keep-* with the level that keeps what they name.
      CHECK_THAT(f.missing_text(*c), Catch::Contains("--positions selected --keep-heads 1"));
    }
    CHECK(a.bucket_curve("coverage"));
    for (const char* col : {"coverage_mean", "kl_mean", "block_recall_mean", "output_rel_err_mean"}) {
      const double csv = row.value[s.column(col)], attr = a.summary_value(col);
      if (std::isnan(csv)) CHECK(std::isnan(attr));
      else CHECK(attr == Approx(csv).epsilon(1e-5));
    }
  }

  // The viewer's 16-bucket means are buckets.csv's (same edges, same "with a choice" rule):
  // computed from head 0's kept arrays, and stored for head 1, whose arrays were not kept.
  for (const int64_t head : {0, 1}) {
    const std::string buckets = read_text(out + "/buckets.csv");
    std::istringstream lines(buckets);
    std::string line;
    std::getline(lines, line);
    REQUIRE(line.rfind("layer,head,router,block_size,top_k,t_begin,t_end,n_choice,coverage_mean", 0) == 0);
    const ConfigKey* c = f.find({0, head, 32, 2, RouterKind::moba});
    REQUIRE(c != nullptr);
    const ResultArrays a = f.load(*c);
    REQUIRE((head == 0 ? a.metric("coverage") != nullptr : a.bucket_curve("coverage") != nullptr));
    const BucketSeries b = head == 0 ? bucket_means(*a.metric("coverage"), 32, 2, 16) : *a.bucket_curve("coverage");
    int matched = 0;
    while (std::getline(lines, line)) {
      std::vector<std::string> cells;
      std::stringstream ls(line);
      std::string cell;
      while (std::getline(ls, cell, ',')) cells.push_back(cell);
      if (cells.size() < 9 || cells[0] != "0" || cells[1] != std::to_string(head) || cells[2] != "moba" ||
          cells[3] != "32" || cells[4] != "2")
        continue;
      const int64_t t_begin = std::stoll(cells[5]);
      const auto it = std::find(b.edges.begin(), b.edges.end(), t_begin);
      REQUIRE(it != b.edges.end());
      const size_t e = static_cast<size_t>(it - b.edges.begin());
      CHECK(std::stoll(cells[6]) == b.edges[e + 1]);
      if (cells[8] == "nan") CHECK(std::isnan(b.mean[e]));
      else CHECK(b.mean[e] == Approx(std::stod(cells[8])).epsilon(1e-5));
      ++matched;
    }
    CHECK(matched == 16);
  }
}

namespace {

// Every number of `f`'s summary.csv and buckets.csv rows equals what ResultsFile loads for the
// row's configuration (the CSVs print 6 significant digits); `n_rows` summary rows.
void check_against_csvs(const ResultsFile& f, size_t n_rows) {
  REQUIRE(f.has_summary());
  const SummaryTable& s = f.summary();
  REQUIRE(s.rows.size() == n_rows);
  const auto key_of = [](const SummaryTable& t, const SummaryTable::Row& row) {
    return ConfigKey{static_cast<int>(row.value[t.column("layer")]), static_cast<int64_t>(row.value[t.column("head")]),
                     static_cast<int64_t>(row.value[t.column("block_size")]),
                     static_cast<int>(row.value[t.column("top_k")]), router_from_name(row.text[t.column("router")])};
  };
  const auto same = [](double stored, double csv) {
    if (std::isnan(csv)) return std::isnan(stored);
    return stored == Approx(csv).epsilon(1e-5).margin(1e-12);
  };
  int compared = 0;
  for (const auto& row : s.rows) {
    const ConfigKey* c = f.find(key_of(s, row));
    REQUIRE(c != nullptr);
    const ResultArrays a = f.load(*c);
    for (const auto& col : summary_columns()) {
      const int i = s.column(col.name);
      if (i < 0) continue;
      INFO(c->name() << " " << col.name);
      CHECK(same(a.summary_value(col.name), row.value[static_cast<size_t>(i)]));
      ++compared;
    }
  }
  CHECK(compared >= static_cast<int>(n_rows) * 50);
  const SummaryTable b = read_summary_csv(f.dir() + "/buckets.csv");
  for (const auto& row : b.rows) {
    const ConfigKey* c = f.find(key_of(b, row));
    REQUIRE(c != nullptr);
    const ResultArrays a = f.load(*c);
    const BucketSeries* cov = a.bucket_curve("coverage");
    REQUIRE(cov != nullptr);
    const auto t_begin = static_cast<int64_t>(row.value[b.column("t_begin")]);
    const auto it = std::find(cov->edges.begin(), cov->edges.end(), t_begin);
    REQUIRE(it + 1 < cov->edges.end());
    const auto e = static_cast<size_t>(it - cov->edges.begin());
    CHECK(cov->edges[e + 1] == static_cast<int64_t>(row.value[b.column("t_end")]));
    CHECK(a.bucket_n_choice.at(e) == static_cast<int64_t>(row.value[b.column("n_choice")]));
    for (const std::string& name : bucket_metric_names()) {
      INFO(c->name() << " bucket " << e << " " << name);
      CHECK(same(a.bucket_curve(name)->mean.at(e), row.value[b.column(name + "_mean")]));
    }
  }
}

}  // namespace

TEST_CASE("ResultsFile reads analysis.h5 of layout 1 (a group per configuration) as layout 2", "[results][cli]") {
  // tests/data/analysis_layout1: written by the last build of layout 1 (431f014), CPU, with
  //   moba analyze experiments/data/stories15M_tinystory_256.h5 --device cpu --layers 3
  //     --heads 0,1 --block-sizes 16,32 --top-k 2 --routers moba,oracle,moba-kconv
  //     --positions selected --keep-heads 1 --keep-configs B16_k2
  // (analysis.h5 and its summary.csv and buckets.csv). The same command now writes layout 2.
  const std::string src = MOBA_SOURCE_DIR;
  const ResultsFile old(src + "/tests/data/analysis_layout1");
  CHECK(old.attributes().count(kAttrLayout) == 0);
  REQUIRE(old.configs().size() == 12);  // 2 heads x 2 B x 3 routers
  check_against_csvs(old, 12);

  ScratchDir dir("results_layout2");
  const std::string out = dir.file("ana");
  REQUIRE(exit_status(std::string(MOBA_BINARY) + " analyze " + src +
                      "/experiments/data/stories15M_tinystory_256.h5 --device cpu --layers 3 --heads 0,1 "
                      "--block-sizes 16,32 --top-k 2 --routers moba,oracle,moba-kconv --positions selected "
                      "--keep-heads 1 --keep-configs B16_k2 --quiet --out " + out + " > /dev/null") == 0);
  const ResultsFile now(out);
  CHECK(now.attributes().at(kAttrLayout) == std::to_string(kLayoutVersion));
  check_against_csvs(now, 12);
  // The same catalogue, levels, kept arrays and SNR histograms from both layouts.
  REQUIRE(now.configs() == old.configs());
  for (size_t i = 0; i < old.configs().size(); ++i) {
    const ConfigKey& c = old.configs()[i];
    INFO(c.name());
    const StoredLevels a = old.stored_levels()[i], b = now.stored_levels()[i];
    CHECK((a.selection == b.selection && a.metrics == b.metrics && a.buckets == b.buckets));
    CHECK(a.selection == (c.head == 1 && c.block_size == 16));
    CHECK(a.buckets);
    CHECK(old.n_tokens(c) == 256);
    CHECK(now.n_tokens(c) == 256);
    const ResultArrays x = old.load(c), y = now.load(c);
    CHECK(x.selected == y.selected);
    CHECK((x.n_tokens == y.n_tokens && x.n_blocks == y.n_blocks));
    // The values: bit for bit when this build's instruction set is the fixture's; else
    // (docs/cli.md: MOBA_MARCH changes the CPU analysis' last bits, e.g. an output error of
    // 9.0e-8 against 9.3e-8 where MoBA equals full attention) within 1e-6 relative + 1e-6.
    const auto near = [](double a, double b) {
      return (std::isnan(a) && std::isnan(b)) || a == Approx(b).epsilon(1e-6).margin(1e-6);
    };
    REQUIRE(x.summary.size() == y.summary.size());
    for (const auto& [name, v] : x.summary) {
      INFO(name);
      CHECK(near(v, y.summary_value(name)));
    }
    REQUIRE(x.metrics.size() == y.metrics.size());
    for (const auto& [name, v] : x.metrics) {
      const std::vector<float>* w = y.metric(name);
      REQUIRE(w);
      REQUIRE(w->size() == v.size());
      for (size_t t = 0; t < v.size(); ++t) {
        INFO(name << " t " << t << " " << v[t] << " vs " << (*w)[t]);
        CHECK(near(v[t], (*w)[t]));
      }
    }
    CHECK(x.bucket_n_choice == y.bucket_n_choice);
    REQUIRE(x.bucket_curves.size() == y.bucket_curves.size());
    for (const auto& [name, curve] : x.bucket_curves) {
      const BucketSeries* other = y.bucket_curve(name);
      REQUIRE(other);
      CHECK(curve.edges == other->edges);
      REQUIRE(curve.mean.size() == other->mean.size());
      for (size_t i = 0; i < curve.mean.size(); ++i) CHECK(near(curve.mean[i], other->mean[i]));
    }
    CHECK(x.signal_rank_hist.size() == (router_is_gate(c.router) ? static_cast<size_t>(kSnrMaxRank + 1) : 0));
    CHECK(x.signal_rank_hist == y.signal_rank_hist);
  }
}

TEST_CASE("moba gui: exit 2 without a GUI build, or for a missing DIR", "[results][cli]") {
  // Without MOBA_GUI the command says the build has no GUI; with it, a missing DIR is bad
  // input, rejected before any window is opened. Exit 2 either way.
  ScratchDir dir("results_gui");
  const int rc = exit_status(std::string(MOBA_BINARY) + " gui " + dir.file("missing") + " > /dev/null 2>&1");
  CHECK(rc == 2);
}
