// `moba`: the workbench's command-line entry. The only place that turns errors into exit
// codes: 0 ok, 2 bad input or usage, 1 internal error.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/h5_output.h"
#include "core/interrupt.h"
#include "experiments/build_info.h"
#include "experiments/command.h"

namespace moba::cli {

std::vector<CommandEntry>& command_table() {
  static std::vector<CommandEntry> table;
  return table;
}

Command::Command(const char* name, const char* summary, CommandFn fn) {
  command_table().push_back({name, summary, fn});
}

}  // namespace moba::cli

static void print_usage(FILE* out) {
  auto table = moba::cli::command_table();
  std::sort(table.begin(), table.end(),
            [](const auto& a, const auto& b) { return std::strcmp(a.name, b.name) < 0; });
  std::fprintf(out, "usage: moba COMMAND [options]   (moba COMMAND --help for its options)\n"
                    "       moba --version\n\ncommands:\n");
  for (const auto& c : table) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
}

// Runs one command, turning its errors into exit codes and messages.
static int run_command(const moba::cli::CommandEntry& c, const std::vector<std::string>& args) {
  try {
    return c.fn(args);
  } catch (const moba::Interrupted& e) {
    // Temporaries are gone (destructors ran); a command that kept finished work said so.
    std::fprintf(stderr, "moba %s: interrupted (%s)\n", c.name, e.signal() == SIGTERM ? "SIGTERM" : "SIGINT");
    return 128 + e.signal();
  } catch (const moba::InputError& e) {
    std::fprintf(stderr, "moba %s: error: %s\n", c.name, e.what());
    return 2;
  } catch (const moba::UsageError& e) {
    std::fprintf(stderr, "moba %s: usage error: %s\n", c.name, e.what());
    return 2;
  } catch (const moba::OutputError& e) {
    std::fprintf(stderr, "moba %s: error: %s\n", c.name, e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "moba %s: internal error: out of memory\n", c.name);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moba %s: internal error: %s\n", c.name, e.what());
    return 1;
  }
}

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(stdout);
    return 0;
  }
  if (name == "--version" || name == "version") {
    std::printf("%s\n", moba::cli::version_line().c_str());
    return 0;
  }
  const std::vector<std::string> args(argv + 2, argv + argc);
  moba::install_interrupt_handlers();
  for (const auto& c : moba::cli::command_table()) {
    if (name != c.name) continue;
    const int code = run_command(c, args);
    // After a failed HDF5 write (a full disk), HDF5's own clean-up at exit may crash on the file
    // whose close failed: end without the exit handlers (the temporaries are already removed).
    if (moba::hdf5_write_failed()) {
      std::fflush(nullptr);
      std::_Exit(code);
    }
    return code;
  }
  std::fprintf(stderr, "moba: unknown command '%s'\n\n", name.c_str());
  print_usage(stderr);
  return 2;
}
