// cli/command_list.hpp: every `engram` command, in the order `engram --help` lists them; main.cpp
// builds its table from this list (one X(NAME) line a command; NAME_command() is defined in the
// command's own file, see command.hpp). Only main.cpp includes it, so adding a command recompiles
// main.cpp and the new file.
#pragma once

#include "cli/command.hpp"

namespace engram::cli {

// Every command, in the order `engram --help` lists them.
#define ENGRAM_CLI_COMMANDS(X) \
  X(compress_vocab)            \
  X(info)                      \
  X(hash)                      \
  X(forward)                   \
  X(backward)                  \
  X(pack)                      \
  X(bench_offload)             \
  X(push)                      \
  X(bench)                     \
  X(probe)                     \
  X(demo)                      \
  X(train)

#define ENGRAM_CLI_DECLARE_COMMAND(name) Command name##_command();
ENGRAM_CLI_COMMANDS(ENGRAM_CLI_DECLARE_COMMAND)
#undef ENGRAM_CLI_DECLARE_COMMAND

}  // namespace engram::cli
