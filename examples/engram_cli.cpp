// engram: command-line tool (placeholder main; subcommands land with their components).
#include <cstdio>
#include <exception>

#include "engram/error.hpp"

int main(int argc, char** argv) {
  (void)argc;
  (void)argv;
  std::fprintf(stderr, "usage: engram <command> ...\n");
  return 2;
}
