// `engram --help`, `engram` alone, every command's --help / -h, unknown commands and options, and
// the README's command table, all driven by the list `engram --help` prints: a new command is
// covered by adding it to the CLI, nothing here.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_support.hpp"

namespace engram {
namespace {

using test::run_cli;

/// The commands `engram --help` lists: the "  NAME  summary" lines after "commands:".
std::vector<std::string> listed_commands(const std::string& help) {
  std::vector<std::string> names;
  std::istringstream lines(help);
  bool in_list = false;
  for (std::string line; std::getline(lines, line);) {
    if (line == "commands:") {
      in_list = true;
    } else if (in_list && line.rfind("  ", 0) == 0 && line.size() > 2 && line[2] != ' ') {
      names.push_back(line.substr(2, line.find(' ', 2) - 2));
    } else {
      in_list = false;
    }
  }
  return names;
}

std::vector<std::string> listed_commands() {
  const auto r = run_cli("--help");
  EXPECT_EQ(r.status, 0) << r.output;
  return listed_commands(r.output);
}

TEST(CliHelp, ListsEveryCommandWithItsSummary) {
  const auto r = run_cli("--help");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.rfind("usage: engram <command> [options]\n", 0), 0u) << r.output;
  const auto names = listed_commands(r.output);
  ASSERT_GE(names.size(), 10u) << r.output;
  for (const char* name : {"compress-vocab", "info", "hash", "forward", "pack", "bench-offload",
                           "push", "bench", "probe", "demo"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  }
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    for (const auto& name : names) {
      if (line.rfind("  " + name + " ", 0) != 0) continue;
      SCOPED_TRACE(line);
      EXPECT_GT(line.find_first_not_of(' ', 2 + name.size()), 2 + name.size());  // a summary
      EXPECT_LT(line.size(), 101u);  // one line of at most 100 columns
    }
  }
  EXPECT_EQ(run_cli("-h").output, r.output);
}

// `engram` alone: the same list on stderr, exit status 2 (documented in cli/main.cpp and README).
TEST(CliHelp, NoArgumentsPrintsTheListAndStatusTwo) {
  const auto r = test::shell("(" + std::string(ENGRAM_CLI_PATH) + " 2>&1 >/dev/null)");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_EQ(listed_commands(r.output), listed_commands());
}

TEST(CliHelp, EveryCommandAnswersHelpWithUsageOptionsAndAnExample) {
  const auto names = listed_commands();
  ASSERT_FALSE(names.empty());
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    for (const char* flag : {"--help", "-h"}) {
      const auto r = run_cli(name + " " + flag);
      EXPECT_EQ(r.status, 0) << r.output;
      EXPECT_EQ(r.output.rfind("usage: engram " + name + " ", 0), 0u) << r.output;
      EXPECT_NE(r.output.find("\noptions:\n  "), std::string::npos) << r.output;
      EXPECT_NE(r.output.find("\nexample:\n  engram " + name + " "), std::string::npos) << r.output;
    }
  }
  // --help wins over anything else on the line, even arguments that would be an error.
  const auto r = run_cli("forward --no-such-option --help");
  EXPECT_EQ(r.status, 0) << r.output;
}

TEST(CliHelp, UnknownCommandsAndOptionsNameThemselvesAndExitTwo) {
  const auto r = run_cli("frobnicate --x");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("unknown command 'frobnicate'"), std::string::npos) << r.output;
  for (const auto& name : listed_commands()) {
    SCOPED_TRACE(name);
    const auto u = run_cli(name + " --no-such-option 1");
    EXPECT_EQ(u.status, 2) << u.output;
    EXPECT_NE(u.output.find("unknown option --no-such-option"), std::string::npos) << u.output;
    EXPECT_NE(u.output.find("usage: engram " + name + " "), std::string::npos) << u.output;
  }
}

// The README's "Command line" section has a row for every command `engram --help` lists.
TEST(CliHelp, TheReadmeCommandTableCoversEveryCommand) {
  std::ifstream in(ENGRAM_README_PATH);
  ASSERT_TRUE(in) << ENGRAM_README_PATH;
  std::string section;
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("## ", 0) == 0) inside = line.rfind("## Command line", 0) == 0;
    if (inside) section += line + "\n";
  }
  ASSERT_FALSE(section.empty()) << "README.md has no '## Command line' section";
  for (const auto& name : listed_commands()) {
    EXPECT_NE(section.find("| `engram " + name + " "), std::string::npos)
        << "README.md's Command line table has no row for `engram " << name << "`";
  }
}

}  // namespace
}  // namespace engram
