// cli/command.hpp: one `engram` command as the command table in main.cpp sees it.
//
// A command is a file cli/NAME_command.cpp (or a group file) defining `Command NAME_command()`:
// its name, a one-line summary, its usage forms, its options and one example (what
// `engram NAME --help` prints), and the function that runs it on argv[2..argc). Adding a command
// is that file plus one X(NAME) line in command_list.hpp; CMake picks up every cli/*.cpp, and
// `engram --help`, the --help tests and the README check follow the list.
//
// run: throws UsageError (args.hpp) for bad usage (exit status 2, printed with the usage) and
// anything else derived from std::exception for bad inputs (exit status 1, one line
// "engram: error: ..."); returns the exit status otherwise.
#pragma once

#include <string_view>

namespace engram::cli {

struct Command {
  std::string_view name;     ///< as typed: `engram NAME ...`
  std::string_view summary;  ///< one line for `engram --help`
  std::string_view usage;    ///< usage forms after "engram ", one a line
  std::string_view options;  ///< "  --flag VALUE   what it does" lines (may be empty)
  std::string_view example;  ///< one command line, after "engram "
  int (*run)(int argc, char** argv);
};

}  // namespace engram::cli
