// Helpers of the command-line tests: run the `engram` binary (ENGRAM_CLI_PATH, set by
// tests/cli/tests.cmake) or any shell command, capturing its exit status and output, and a
// per-process temporary directory.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

namespace engram::test {

/// A finished command: exit status (-1 when it did not exit normally) and stdout + stderr.
struct CliRun {
  int status;
  std::string output;
};

/// Runs `cmd` with /bin/sh, stderr merged into the captured output.
inline CliRun shell(const std::string& cmd) {
  CliRun r{0, ""};
  FILE* pipe = ::popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (pipe && std::fgets(buf, sizeof buf, pipe)) r.output += buf;
  const int raw = pipe ? ::pclose(pipe) : -1;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}

#ifdef ENGRAM_CLI_PATH
/// Runs `engram ARGS`.
inline CliRun run_cli(const std::string& args) {
  return shell(std::string(ENGRAM_CLI_PATH) + " " + args);
}
#endif

/// `name` inside a directory of this process's own under the system's temporary directory,
/// `prefix` naming the test (e.g. "engram_cli").
inline std::string temp_file(const std::string& prefix, const std::string& name) {
  const auto dir =
      std::filesystem::temp_directory_path() / (prefix + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

}  // namespace engram::test
