// engram/memory/tiers/memcached_uri.hpp: the table location URI of a memcached pool,
//   memcached://HOST:PORT[,HOST:PORT...][?fallback=TABLE.engram][&cache_mb=N]
//                [&connect_timeout_ms=N][&io_timeout_ms=N][&retry_timeout_s=N]
// HOST is a name, an IPv4 address or a bracketed IPv6 address ([::1]); PORT defaults to 11211.
// `fallback` is the durable packed table the pool's pages come from (required to serve rows: it
// holds the layout and page checksums, and serves the pages the pool misses); `cache_mb` puts a
// hot-row CachedTier of that many MiB in front (0 = none).
// Parsing needs no libmemcached (the CLI reports a clear error on a build without it). Errors are
// engram::Error naming the URI and the offending part.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engram/error.hpp"

namespace engram {

/// One memcached server.
struct MemcachedServer {
  std::string host;
  int port = 11211;
  std::string to_string() const {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
           std::to_string(port);
  }
  friend bool operator==(const MemcachedServer&, const MemcachedServer&) = default;
};

/// Client timeouts: a dead or unreachable server costs at most about connect + io timeout per
/// batch, and is then skipped for retry_timeout_s seconds (its rows come from the fallback).
struct MemcachedOptions {
  int connect_timeout_ms = 250;
  int io_timeout_ms = 1000;
  int retry_timeout_s = 2;
};

/// Largest cache_mb a table URI may give (1 PiB; every scheme): keeps `cache_mb << 20` in range.
inline constexpr int64_t kMaxCacheMb = int64_t{1} << 30;

/// A parsed memcached:// URI.
struct MemcachedUri {
  std::vector<MemcachedServer> servers;
  std::string fallback;  ///< packed table path ("" when not given)
  int64_t cache_mb = 0;
  MemcachedOptions options;
};

/// Whether `uri` names a memcached pool (starts with "memcached://").
inline bool is_memcached_uri(std::string_view uri) noexcept {
  return uri.starts_with("memcached://");
}

/// Parses a memcached:// URI (see the banner).
inline MemcachedUri parse_memcached_uri(std::string_view uri) {
  const std::string where = "table URI '" + std::string(uri) + "'";
  ENGRAM_CHECK(is_memcached_uri(uri), where, ": expected memcached://HOST:PORT[,HOST:PORT...]");
  std::string_view rest = uri.substr(12);
  std::string_view query;
  if (const size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  auto parse_int = [&](std::string_view text, const char* what, int64_t lo, int64_t hi) {
    int64_t v = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    ENGRAM_CHECK(ec == std::errc() && ptr == text.data() + text.size() && v >= lo && v <= hi, where,
                 ": ", what, " must be an integer in [", lo, ", ", hi, "], found '", text, "'");
    return v;
  };
  MemcachedUri out;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    ENGRAM_CHECK(!item.empty(), where, ": empty server in the list");
    MemcachedServer server;
    std::string_view port;
    if (item.front() == '[') {
      const size_t close = item.find(']');
      ENGRAM_CHECK(close != std::string_view::npos, where, ": unterminated '[' in '", item, "'");
      server.host = std::string(item.substr(1, close - 1));
      const std::string_view after = item.substr(close + 1);
      ENGRAM_CHECK(after.empty() || after.front() == ':', where, ": expected ':PORT' after '",
                   item.substr(0, close + 1), "'");
      if (!after.empty()) port = after.substr(1);
    } else {
      const size_t colon = item.rfind(':');
      server.host = std::string(item.substr(0, colon));
      if (colon != std::string_view::npos) port = item.substr(colon + 1);
    }
    ENGRAM_CHECK(!server.host.empty(), where, ": server '", item, "' has no host");
    if (!port.empty())
      server.port = static_cast<int>(
          parse_int(port, ("port of '" + std::string(item) + "'").c_str(), 1, 65535));
    out.servers.push_back(std::move(server));
  }
  ENGRAM_CHECK(!out.servers.empty(), where, ": no servers (expected memcached://HOST:PORT,...)");
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    ENGRAM_CHECK(eq != std::string_view::npos, where, ": query part '", pair, "' is not KEY=VALUE");
    const std::string_view key = pair.substr(0, eq), value = pair.substr(eq + 1);
    if (key == "fallback") {
      ENGRAM_CHECK(!value.empty(), where, ": fallback is empty");
      out.fallback = std::string(value);
    } else if (key == "cache_mb") {
      out.cache_mb = parse_int(value, "cache_mb", 0, kMaxCacheMb);
    } else if (key == "connect_timeout_ms") {
      out.options.connect_timeout_ms =
          static_cast<int>(parse_int(value, "connect_timeout_ms", 1, 600000));
    } else if (key == "io_timeout_ms") {
      out.options.io_timeout_ms = static_cast<int>(parse_int(value, "io_timeout_ms", 1, 600000));
    } else if (key == "retry_timeout_s") {
      out.options.retry_timeout_s = static_cast<int>(parse_int(value, "retry_timeout_s", 0, 3600));
    } else {
      detail::fail(where, ": unknown parameter '", key,
                   "' (known: fallback, cache_mb, connect_timeout_ms, io_timeout_ms, "
                   "retry_timeout_s)");
    }
  }
  return out;
}

}  // namespace engram
