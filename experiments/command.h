#pragma once
// Subcommands of `moba`. Each lives in its own experiments/cmd_<name>.cpp and registers
// itself with a static Command object; main() dispatches on argv[1].
#include <string>
#include <vector>

namespace moba::cli {

using CommandFn = int (*)(const std::vector<std::string>& args);

struct Command {
  Command(const char* name, const char* summary, CommandFn fn);
};

struct CommandEntry {
  const char* name;
  const char* summary;
  CommandFn fn;
};
std::vector<CommandEntry>& command_table();

}  // namespace moba::cli
