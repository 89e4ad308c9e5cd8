// Review findings on the `moba analyze` / `moba route` command lines (DESIGN.md §7): output
// paths written the way users type them, and exit codes.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/atomic_file.h"
#include "core/dump.h"
#include "core/errors.h"
#include "test_analysis_util.h"
#include "test_io_util.h"

using namespace moba;

namespace {

void write_small_dump(const std::string& path) {
  DumpMeta meta;
  meta.model = "review-cli";
  DumpWriter w(path, meta);
  const Tensor3 q = analysis_test::random_tensor(2, 64, 8, 1);
  const Tensor3 k = analysis_test::random_tensor(1, 64, 8, 2);
  const Tensor3 v = analysis_test::random_tensor(1, 64, 8, 3);
  w.write_tensor(0, TensorKind::q, q, DType::f32);
  w.write_tensor(0, TensorKind::k, k, DType::f32);
  w.write_tensor(0, TensorKind::v, v, DType::f32);
  w.commit();
}

int run_moba(const std::string& args) {
  const int rc = std::system((std::string(MOBA_BINARY) + " " + args + " > /dev/null 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST_CASE("moba analyze: --out DIR/ (trailing slash) writes DIR like --out DIR", "[analysis][cli][review]") {
  io_test::ScratchDir dir("review_slash");
  const std::string dump = dir.file("d.h5");
  write_small_dump(dump);
  namespace fs = std::filesystem;
  const std::string common = " analyze " + dump + " --block-sizes 8 --top-k 2 --quiet --out ";

  SECTION("DIR absent") {
    CHECK(run_moba(common + dir.file("A") + "/") == 0);
    CHECK(fs::exists(dir.dir / "A" / "summary.csv"));
    CHECK(fs::exists(dir.dir / "A" / "run.json"));
    CHECK_FALSE(fs::exists(dir.dir / "A" / ".partial"));
    CHECK_FALSE(fs::exists(dir.dir / "A.partial"));
  }
  SECTION("DIR exists and is empty") {
    fs::create_directories(dir.dir / "B");
    CHECK(run_moba(common + dir.file("B") + "/") == 0);
    CHECK(fs::exists(dir.dir / "B" / "summary.csv"));
    CHECK_FALSE(fs::exists(dir.dir / "B" / ".partial"));
  }
  SECTION("DIR is an earlier output") {
    REQUIRE(run_moba(common + dir.file("C")) == 0);
    CHECK(run_moba(common + dir.file("C") + "//") == 0);
    CHECK(fs::exists(dir.dir / "C" / "summary.csv"));
    CHECK_FALSE(fs::exists(dir.dir / "C" / ".partial"));
    auto entries = dir.entries();
    std::sort(entries.begin(), entries.end());
    CHECK(entries == std::vector<std::string>{"C", "d.h5"});
  }
}

TEST_CASE("moba analyze: a head or layer listed twice is a usage error (exit 2, nothing left)", "[analysis][cli][review]") {
  io_test::ScratchDir dir("review_dup");
  const std::string dump = dir.file("d.h5");
  write_small_dump(dump);
  const std::string common = " analyze " + dump + " --block-sizes 8 --top-k 2 --quiet --out " + dir.file("A");
  CHECK(run_moba(common + " --heads 1,1") == 2);
  CHECK(run_moba(common + " --layers 0,0") == 2);
  CHECK(dir.entries() == std::vector<std::string>{"d.h5"});
  CHECK(run_moba(common + " --heads 1,0 --layers 0") == 0);
}

TEST_CASE("moba route: --out naming an existing directory is a usage error (exit 2)", "[analysis][route][cli][review]") {
  io_test::ScratchDir dir("review_route_dir");
  const std::string dump = dir.file("d.h5");
  write_small_dump(dump);
  std::filesystem::create_directories(dir.dir / "somedir");
  CHECK(run_moba(" route " + dump + " --layer 0 --block-size 8 --top-k 2 --quiet --out " + dir.file("somedir")) == 2);
  auto entries = dir.entries();
  std::sort(entries.begin(), entries.end());
  CHECK(entries == std::vector<std::string>{"d.h5", "somedir"});
  CHECK(std::filesystem::is_empty(dir.dir / "somedir"));
}

TEST_CASE("write_file_atomic: a file that cannot be written is an OutputError naming it and why", "[io][review]") {
  io_test::ScratchDir dir("review_atomic");
  std::filesystem::create_directories(dir.dir / "taken");  // a directory where the file goes
  const std::string path = dir.file("taken");
  try {
    write_file_atomic(path, "x\n");
    FAIL("no error");
  } catch (const OutputError& e) {
    const std::string m = e.what();
    CHECK(m.find("cannot write " + path + ": ") == 0);
    CHECK(m.find("Success") == std::string::npos);  // the reason, not a reused error code's
  }
  CHECK(dir.entries() == std::vector<std::string>{"taken"});  // no temporary left
  CHECK_THROWS_AS(write_file_atomic(dir.file("missing/f.txt"), "x\n"), OutputError);
}

// A value left out before the next option names the option, not a missing DUMP (docs/cli.md
// "Conventions"); --tau's range is (0, 1] in its message as in --help; each exits 2 and leaves
// nothing behind.
TEST_CASE("moba analyze: a missing value and --tau out of range are named in the message", "[analysis][cli][review]") {
  io_test::ScratchDir dir("review_values");
  const std::string dump = dir.file("d.h5");
  write_small_dump(dump);
  const std::string err = dir.file("err.txt");
  const auto message = [&](const std::string& args) {
    const int rc = std::system((std::string(MOBA_BINARY) + " analyze " + dump + " --quiet --out " + dir.file("A") + " " +
                                args + " > /dev/null 2> " + err)
                                   .c_str());
    CHECK((WIFEXITED(rc) && WEXITSTATUS(rc) == 2));
    return io_test::read_text(err);
  };
  CHECK_THAT(message("--block-sizes 8 --top-k --heads 0"), Catch::Contains("--top-k needs a value"));
  CHECK_THAT(message("--top-k 2 --block-sizes --heads 0"), Catch::Contains("--block-sizes needs a value"));
  CHECK_THAT(message("--block-sizes 8 --top-k 2 --tau 1.01"), Catch::Contains("--tau: 1.01 is out of range (0, 1]"));
  CHECK_THAT(message("--block-sizes 8 --top-k 2 --tau 0"), Catch::Contains("--tau: 0 is out of range (0, 1]"));
  auto entries = dir.entries();
  std::sort(entries.begin(), entries.end());
  CHECK(entries == std::vector<std::string>{"d.h5", "err.txt"});
  // A negative number is still a value (a single dash): --top-k's own range check answers.
  CHECK_THAT(message("--block-sizes 8 --top-k -1"), Catch::Contains("--top-k"));
  // A trailing comma is an empty item, as a leading or a doubled one is.
  CHECK_THAT(message("--block-sizes 8, --top-k 2"), Catch::Contains("--block-sizes: empty item"));
  CHECK_THAT(message("--block-sizes 8 --top-k 2 --routers moba,"), Catch::Contains("--routers: empty item"));
}

TEST_CASE("moba analyze: --out in a directory that does not exist is refused, not created", "[analysis][cli][review]") {
  io_test::ScratchDir dir("review_parent");
  const std::string dump = dir.file("d.h5");
  write_small_dump(dump);
  CHECK(run_moba(" analyze " + dump + " --block-sizes 8 --top-k 2 --quiet --out " + dir.file("nowhere") + "/A") == 2);
  CHECK(dir.entries() == std::vector<std::string>{"d.h5"});
}
