// cli/progress.hpp: the progress line of the long commands (pack, push, bench-offload's table
// writer): "\r  DONE / TOTAL UNIT (P%), R MB/s, S s left" on stderr, only when stderr is a terminal
// (logs and tests see nothing), ending with a newline when done == total.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>

namespace engram::cli {

inline bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) != 0; }

inline void print_progress(int64_t done, int64_t total, const char* unit,
                           double megabytes_per_second, double seconds_left) {
  std::fprintf(stderr, "\r  %lld / %lld %s (%.1f%%), %.0f MB/s, %.0f s left   ",
               static_cast<long long>(done), static_cast<long long>(total), unit,
               100.0 * static_cast<double>(done) / static_cast<double>(std::max<int64_t>(1, total)),
               megabytes_per_second, seconds_left);
  if (done == total) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

}  // namespace engram::cli
