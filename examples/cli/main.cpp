// engram: the command-line tool. Each command is one capability of the library on files; the
// table below (command_list.hpp) says which, and every command lives in its own file:
//
//   layer_commands.cpp   compress-vocab, hash, forward (a checkpoint and a config)
//   train_commands.cpp   backward (one layer's gradients)
//   model_commands.cpp   info, hash --model, forward --model (V4.1 directories as released)
//   tier_commands.cpp    pack (packed tables; forward --table reads them)
//   remote_commands.cpp  push (memcached pools)
//   bench_command.cpp    bench;  offload_command.cpp bench-offload;  probe_command.cpp probe
//   demo_command.cpp     demo (the README's walk-through)
//
// `engram --help` lists the commands with their summaries (exit 0); `engram` alone prints the same
// to stderr and exits 2; `engram COMMAND --help` (or -h, anywhere on the line) prints its usage,
// options and an example (exit 0). Bad usage (an unknown command or option, a missing or malformed
// value) names what was wrong and exits 2; errors in inputs print one line "engram: error: ..."
// and exit 1.
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "cli/args.hpp"
#include "cli/command_list.hpp"

namespace engram::cli {
namespace {

const std::vector<Command>& commands() {
#define ENGRAM_CLI_TABLE_ENTRY(name) name##_command(),
  static const std::vector<Command> list = {ENGRAM_CLI_COMMANDS(ENGRAM_CLI_TABLE_ENTRY)};
#undef ENGRAM_CLI_TABLE_ENTRY
  return list;
}

void print_commands(std::FILE* out) {
  std::fprintf(out, "usage: engram <command> [options]\ncommands:\n");
  for (const Command& c : commands())
    std::fprintf(out, "  %-15.*s %.*s\n", static_cast<int>(c.name.size()), c.name.data(),
                 static_cast<int>(c.summary.size()), c.summary.data());
  std::fprintf(out, "`engram COMMAND --help` prints a command's options and an example.\n");
}

/// "usage: engram FORM" for the first usage form, "       engram FORM" for the others.
void print_usage(const Command& c, std::FILE* out) {
  std::string_view forms = c.usage;
  const char* lead = "usage: ";
  while (!forms.empty()) {
    const size_t end = forms.find('\n');
    const std::string_view form = forms.substr(0, end);
    std::fprintf(out, "%sengram %.*s\n", lead, static_cast<int>(form.size()), form.data());
    lead = "       ";
    forms = end == std::string_view::npos ? std::string_view() : forms.substr(end + 1);
  }
}

void print_help(const Command& c) {
  print_usage(c, stdout);
  std::printf("%.*s\n", static_cast<int>(c.summary.size()), c.summary.data());
  if (!c.options.empty())
    std::printf("\noptions:\n%.*s", static_cast<int>(c.options.size()), c.options.data());
  std::printf("\nexample:\n  engram %.*s\n", static_cast<int>(c.example.size()), c.example.data());
}

bool is_help(std::string_view arg) { return arg == "--help" || arg == "-h"; }

}  // namespace
}  // namespace engram::cli

int main(int argc, char** argv) {
  using namespace engram::cli;
  if (argc < 2 || is_help(argv[1])) {
    print_commands(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string_view name = argv[1];
  for (const Command& c : commands()) {
    if (name != c.name) continue;
    for (int i = 2; i < argc; ++i) {
      if (is_help(argv[i])) {
        print_help(c);
        return 0;
      }
    }
    try {
      return c.run(argc, argv);
    } catch (const UsageError& e) {
      std::fprintf(stderr, "engram: usage: %s\n", e.what());
      print_usage(c, stderr);
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "engram: error: %s\n", e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "engram: usage: unknown command '%s'\n", argv[1]);
  print_commands(stderr);
  return 2;
}
