// remote_commands.hpp: the engram CLI's memcached pool command (included by engram_cli.cpp):
//
//   engram push --table TABLE.engram --to memcached://HOST:PORT[,HOST:PORT...] [--chunk-pages N]
//     stores every page of the packed table in the pool (remote_tier.hpp's page format and keys),
//     checking each page against the file's checksum before storing it and reading each chunk back
//     to compare it byte for byte. Progress (pages, MB/s, time left) on stderr when it is a
//     terminal; one summary line on stdout. A full server (servers run with `memcached -M`:
//     out of memory is an error, not an eviction) is an error naming the server. Afterwards
//     `--table memcached://HOST:PORT,...?fallback=TABLE.engram` serves the table from the pool.
// Builds without libmemcached keep the command and report that it is unavailable.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "cli/args.hpp"
#include "engram/memory/packed_table.hpp"
#include "engram/memory/tiers/memcached_uri.hpp"
#include "engram/memory/tiers/remote_tier.hpp"
#if ENGRAM_HAVE_MEMCACHED
#include "engram/memory/tiers/memcached_store.hpp"
#endif

namespace engram::cli {

inline int push(int argc, char** argv) {
  const Args args(argc, argv, 2, {"table", "to", "chunk-pages"}, {});
  if (!args.positional().empty()) throw UsageError("unexpected argument " + args.positional()[0]);
  const std::string& to = args.str("to");
  if (!is_memcached_uri(to)) throw UsageError("--to expects memcached://HOST:PORT[,HOST:PORT...]");
  const MemcachedUri uri = parse_memcached_uri(to);
  PushOptions options;
  options.chunk_pages = args.integer("chunk-pages", options.chunk_pages, 1, 1 << 20);
#if ENGRAM_HAVE_MEMCACHED
  const PackedTableFile file(args.str("table"));
  MemcachedStore store(uri.servers, uri.options);
  std::function<void(const PushProgress&)> progress;
  if (::isatty(STDERR_FILENO) != 0) {
    progress = [](const PushProgress& p) {
      std::fprintf(stderr, "\r  %lld / %lld pages (%.1f%%), %.0f MB/s, %.0f s left   ",
                   static_cast<long long>(p.pages_done), static_cast<long long>(p.pages_total),
                   100.0 * static_cast<double>(p.pages_done) /
                       static_cast<double>(std::max<int64_t>(1, p.pages_total)),
                   p.megabytes_per_second, p.seconds_left);
      if (p.pages_done == p.pages_total) std::fprintf(stderr, "\n");
      std::fflush(stderr);
    };
  }
  const PushReport report = push_table(file, store, options, progress);
  std::printf(
      "pushed %s to %s: %lld pages (%.1f MB, %lld rows), all read back identical, in %.2f s "
      "(%.0f MB/s); table key prefix %s\n",
      file.path().c_str(), store.describe().c_str(), static_cast<long long>(report.pages),
      static_cast<double>(report.bytes) / 1e6, static_cast<long long>(file.num_rows()),
      report.seconds,
      report.seconds > 0 ? static_cast<double>(report.bytes) / 1e6 / report.seconds : 0.0,
      remote_key_prefix(packed_table_id(file)).c_str());
  return 0;
#else
  detail::fail("engram push: this build has no memcached support (install libmemcached-dev and ",
               "rebuild; pushing to ", uri.servers.front().to_string(), ")");
#endif
}

}  // namespace engram::cli
