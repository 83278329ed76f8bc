// cli/remote_commands.cpp: `engram push`, the memcached pool command:
//
//   engram push --table TABLE.engram --to memcached://HOST:PORT[,HOST:PORT...] [--chunk-pages N]
//     stores every page of the packed table in the pool (remote_tier.hpp's page format and keys),
//     checking each page against the file's checksum before storing it and reading each chunk back
//     to compare it byte for byte. Progress (pages, MB/s, time left) on stderr when it is a
//     terminal; one summary line on stdout. A full server (servers run with `memcached -M`:
//     out of memory is an error, not an eviction) is an error naming the server. Afterwards
//     `--table memcached://HOST:PORT,...?fallback=TABLE.engram` serves the table from the pool.
// Builds without libmemcached keep the command and report that it is unavailable.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>

#include "cli/args.hpp"
#include "cli/command.hpp"
#include "cli/progress.hpp"
#include "engram/memory/tiers/memcached_uri.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/remote_tier.hpp"
#if ENGRAM_HAVE_MEMCACHED
#include "engram/memory/tiers/memcached_store.hpp"
#endif

namespace engram::cli {
namespace {

int push(int argc, char** argv) {
  const Args args(argc, argv, 2, {"table", "to", "chunk-pages"}, {});
  args.expect_no_positional();
  const std::string& to = args.str("to");
  if (!is_memcached_uri(to)) throw UsageError("--to expects memcached://HOST:PORT[,HOST:PORT...]");
  const MemcachedUri uri = parse_memcached_uri(to);
  PushOptions options;
  options.chunk_pages = args.integer("chunk-pages", options.chunk_pages, 1, 1 << 20);
#if ENGRAM_HAVE_MEMCACHED
  const PackedTableFile file(args.str("table"));
  MemcachedStore store(uri.servers, uri.options);
  std::function<void(const PushProgress&)> progress;
  if (stderr_is_terminal()) {
    progress = [](const PushProgress& p) {
      print_progress(p.pages_done, p.pages_total, "pages", p.megabytes_per_second, p.seconds_left);
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

}  // namespace

Command push_command() {
  return {"push",
          "load a packed table into a memcached pool, verifying pages",
          "push --table TABLE.engram --to memcached://HOST:PORT[,HOST:PORT...] [--chunk-pages N]",
          "  --table TABLE.engram       a packed table (pack)\n"
          "  --to memcached://H:P,...   the pool (servers run with `memcached -M`)\n"
          "  --chunk-pages N            pages stored and read back per round trip\n",
          "push --table layer2.engram --to memcached://127.0.0.1:11211,127.0.0.1:11212",
          push};
}

}  // namespace engram::cli
