// engram/memory/tiers/open_table.hpp: opens an Engram table by a URI that says where its rows live,
// returning the table's metadata and an AnyTier over the rows (any_tier.hpp).
//
// URIs:
//   file:TABLE.engram[?cache_mb=N][&io=direct|buffered|mmap]
//   TABLE.engram                        (a plain path is file:)
//     io=direct (default) DirectIOTier: O_DIRECT reads through io_uring (pread threads as a
//               fallback; buffered reads where the filesystem refuses O_DIRECT)
//     io=buffered         DirectIOTier reading through the page cache
//     io=mmap             InMemoryTier over the mapped file, every page checksum verified once
//     cache_mb=N          a CachedTier (TinyLFU + SLRU) of N MiB in front (0 = none)
// TableOpenOptions::cache_bytes applies when the URI gives no cache_mb.
//
// Adding a scheme: write `OpenedTable open_X_table(std::string_view uri, const TableOpenOptions&)`
// in its own header and add one `if (uri.starts_with("X://")) return open_X_table(uri, options);`
// line to open_table() below (memcached:// is one). detail::parse_table_query splits `?k=v&k=v`.
//
// Errors: engram::Error naming the URI and what was wrong (unknown scheme or parameter, bad value)
// or the file (PackedTableFile's validation).
#pragma once

#include <charconv>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "engram/error.hpp"
#include "engram/memory/packed_table.hpp"
#include "engram/memory/tiers/any_tier.hpp"
#include "engram/memory/tiers/cached_tier.hpp"
#include "engram/memory/tiers/direct_io_tier.hpp"
#include "engram/memory/tiers/in_memory_tier.hpp"
#include "engram/memory/tiers/memcached_uri.hpp"
#if ENGRAM_HAVE_MEMCACHED
#include "engram/memory/tiers/memcached_store.hpp"
#endif

namespace engram {

/// Defaults for what a URI does not say.
struct TableOpenOptions {
  int64_t cache_bytes = 0;         ///< CachedTier capacity when the URI has no cache_mb (0 = none)
  DirectIOOptions direct_io = {};  ///< reader backend, queue depth, checksum verification
};

/// A table opened by open_table: its metadata (config, codec, offsets, primes, multipliers) and
/// its rows.
struct OpenedTable {
  std::string uri;
  PackedTableInfo info;
  AnyTier tier;
};

namespace detail {

/// Splits "PATH?k=v&k=v" into the path and the parameters; errors name `uri`.
inline std::pair<std::string, std::map<std::string, std::string>> parse_table_query(
    std::string_view rest, std::string_view uri) {
  std::map<std::string, std::string> params;
  const size_t q = rest.find('?');
  const std::string path(rest.substr(0, q));
  if (q != std::string_view::npos) {
    std::string_view query = rest.substr(q + 1);
    while (!query.empty()) {
      const size_t amp = query.find('&');
      const std::string_view item = query.substr(0, amp);
      const size_t eq = item.find('=');
      ENGRAM_CHECK(eq != std::string_view::npos && eq > 0, "table URI '", uri, "': parameter '",
                   item, "' is not key=value");
      const std::string key(item.substr(0, eq));
      ENGRAM_CHECK(params.count(key) == 0, "table URI '", uri, "': parameter '", key,
                   "' given twice");
      params[key] = std::string(item.substr(eq + 1));
      query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    }
  }
  return {path, params};
}

/// A non-negative integer parameter of at most `max`; errors name the URI, the parameter and the
/// bound.
inline int64_t parse_table_integer(const std::string& value, std::string_view key,
                                   std::string_view uri, int64_t max) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  ENGRAM_CHECK(ec == std::errc() && end == value.data() + value.size() && v >= 0, "table URI '",
               uri, "': parameter '", key, "' must be a non-negative integer, found '", value, "'");
  ENGRAM_CHECK(v <= max, "table URI '", uri, "': parameter '", key, "' must be at most ", max,
               ", found '", value, "'");
  return v;
}

}  // namespace detail

/// Opens a packed table file (the file: scheme; `uri` is only used in messages).
inline OpenedTable open_file_table(std::string_view uri, const TableOpenOptions& options = {}) {
  std::string_view rest = uri;
  if (rest.starts_with("file:")) rest.remove_prefix(5);
  auto [path, params] = detail::parse_table_query(rest, uri);
  ENGRAM_CHECK(!path.empty(), "table URI '", uri, "': no file path");
  int64_t cache_bytes = options.cache_bytes;
  std::string io = "direct";
  for (const auto& [key, value] : params) {
    if (key == "cache_mb") {
      cache_bytes = detail::parse_table_integer(value, key, uri, kMaxCacheMb) << 20;
    } else if (key == "io") {
      ENGRAM_CHECK(value == "direct" || value == "buffered" || value == "mmap", "table URI '", uri,
                   "': parameter 'io' must be direct, buffered or mmap, found '", value, "'");
      io = value;
    } else {
      detail::fail("table URI '", uri, "': unknown parameter '", key,
                   "' (file: takes cache_mb and io)");
    }
  }
  PackedTableFile file(path);
  PackedTableInfo info = file.info();
  CacheOptions cache;
  cache.capacity_bytes = cache_bytes;
  if (io == "mmap") {
    InMemoryTier mapped = map_packed_table(file, /*verify=*/true);
    if (cache_bytes <= 0)
      return {std::string(uri), std::move(info), AnyTier::make<InMemoryTier>(std::move(mapped))};
    return {std::string(uri), std::move(info),
            AnyTier::make<CachedTier<InMemoryTier>>(cache, std::move(mapped))};
  }
  DirectIOOptions direct = options.direct_io;
  if (io == "buffered") direct.mode = DirectIOOptions::Mode::kBuffered;
  if (cache_bytes <= 0)
    return {std::string(uri), std::move(info),
            AnyTier::make<DirectIOTier>(std::move(file), direct)};
  return {std::string(uri), std::move(info),
          AnyTier::make<CachedTier<DirectIOTier>>(cache, std::move(file), direct)};
}

/// Opens a memcached pool in front of its durable packed file (the memcached:// scheme,
/// memcached_uri.hpp: memcached://H:P,H:P?fallback=TABLE.engram[&cache_mb=N]...).
inline OpenedTable open_memcached_table(std::string_view uri,
                                        const TableOpenOptions& options = {}) {
#if ENGRAM_HAVE_MEMCACHED
  MemcachedTable table = open_memcached_any_tier(uri, options.cache_bytes, options.direct_io);
  return {std::string(uri), std::move(table.info), std::move(table.tier)};
#else
  (void)options;
  detail::fail("table URI '", uri,
               "': this build has no memcached support (install libmemcached-dev and link "
               "engram::memcached)");
#endif
}

/// Opens the table at `uri` (see the banner for the schemes).
inline OpenedTable open_table(std::string_view uri, const TableOpenOptions& options = {}) {
  ENGRAM_CHECK(!uri.empty(), "open_table: empty table URI");
  // One line per scheme (see the banner).
  if (uri.starts_with("file:")) return open_file_table(uri, options);
  if (is_memcached_uri(uri)) return open_memcached_table(uri, options);
  const size_t scheme_end = uri.find("://");
  ENGRAM_CHECK(scheme_end == std::string_view::npos, "table URI '", uri, "': unknown scheme '",
               uri.substr(0, scheme_end), "' (known: file:, memcached://)");
  return open_file_table(uri, options);  // a plain path
}

}  // namespace engram
