// engram/memory/tiers/memcached_store.hpp: the PageStore of RemoteTierT over a memcached pool
// (libmemcached; link engram::memcached, which defines ENGRAM_HAVE_MEMCACHED), the RemoteTier
// alias, and the composed tier behind a `memcached://` table URI.
//
// Distribution: libmemcached's consistent hashing (ketama), so adding a server moves about 1/N of
// the keys; engram does no sharding of its own. get_many is one memcached_mget (one multi-key
// `get` per server, sent to all servers before any reply is read) followed by
// memcached_fetch_result until the end; values land in one reused result buffer (no allocation per
// value). Failures: non-blocking sockets with a connect timeout and a poll (I/O) timeout
// (MemcachedOptions); a server that fails is skipped for retry_timeout_s seconds, so a dead or
// unreachable server costs at most about one timeout per retry period, and its pages are simply
// missing (the fallback serves them). libmemcached waits out the retry period only for refused or
// failed connections; a server that accepts and then stays silent (hung host) is skipped by this
// store for retry_timeout_s after it timed out (its keys are left out of the next gets). get_many
// never throws for a server's failure; it reports it. put is memcached `set` without expiry. With
// the servers started with `-M` (eviction off), a full server answers "SERVER_ERROR out of memory":
// put reports kFull naming the server, and push_table turns that into an error (a pool never
// silently drops pages; with eviction on it would, and the fallback would quietly serve them).
// Threads: a MemcachedStore is one connection per server, used by one thread at a time; clone()
// opens a new set for another thread.
#pragma once

#if !defined(ENGRAM_HAVE_MEMCACHED)
#error "memcached_store.hpp needs libmemcached: link engram::memcached"
#endif

#include <libmemcached/memcached.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engram/error.hpp"
#include "engram/memory/tiers/any_tier.hpp"
#include "engram/memory/tiers/cached_tier.hpp"
#include "engram/memory/tiers/direct_io_tier.hpp"
#include "engram/memory/tiers/fallback_tier.hpp"
#include "engram/memory/tiers/memcached_uri.hpp"
#include "engram/memory/tiers/remote_tier.hpp"

namespace engram {

/// A memcached pool client implementing PageStore (see the banner).
class MemcachedStore {
 public:
  explicit MemcachedStore(std::vector<MemcachedServer> servers, MemcachedOptions options = {})
      : servers_(std::move(servers)), options_(options) {
    ENGRAM_CHECK(!servers_.empty(), "memcached store: no servers");
    memc_ = memcached_create(nullptr);
    ENGRAM_CHECK(memc_ != nullptr, "memcached store: memcached_create failed");
    auto behavior = [&](memcached_behavior_t b, uint64_t value, const char* name) {
      const memcached_return_t rc = memcached_behavior_set(memc_, b, value);
      if (rc != MEMCACHED_SUCCESS) {
        const std::string message = memcached_strerror(memc_, rc);
        memcached_free(memc_);
        detail::fail("memcached store: cannot set ", name, ": ", message);
      }
    };
    // libketama-compatible consistent hashing (MD5 points): other ketama clients agree on where
    // a page lives.
    behavior(MEMCACHED_BEHAVIOR_KETAMA, 1, "ketama distribution");
    behavior(MEMCACHED_BEHAVIOR_NO_BLOCK, 1, "non-blocking I/O");
    behavior(MEMCACHED_BEHAVIOR_TCP_NODELAY, 1, "TCP_NODELAY");
    behavior(MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, static_cast<uint64_t>(options_.connect_timeout_ms),
             "connect timeout");
    behavior(MEMCACHED_BEHAVIOR_POLL_TIMEOUT, static_cast<uint64_t>(options_.io_timeout_ms),
             "poll timeout");
    behavior(MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, static_cast<uint64_t>(options_.retry_timeout_s),
             "retry timeout");
    // Never mark a server dead for good (libmemcached's default after two failures): a restarted
    // server must be used again after retry_timeout_s.
    behavior(MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, uint64_t{1} << 30, "server failure limit");
    // A server that times out (hung, or a black-holed address) is skipped like a refused one.
    behavior(MEMCACHED_BEHAVIOR_SERVER_TIMEOUT_LIMIT, 1, "server timeout limit");
    for (const MemcachedServer& s : servers_) {
      const memcached_return_t rc =
          memcached_server_add(memc_, s.host.c_str(), static_cast<in_port_t>(s.port));
      if (rc != MEMCACHED_SUCCESS) {
        const std::string message = memcached_strerror(memc_, rc);
        memcached_free(memc_);
        detail::fail("memcached store: cannot add server ", s.to_string(), ": ", message);
      }
    }
    // A caller-owned result (libmemcached frees results it allocated itself at the end of a fetch).
    result_ = new memcached_result_st;
    if (memcached_result_create(memc_, result_) == nullptr) {
      delete result_;
      result_ = nullptr;
      memcached_free(memc_);
      detail::fail("memcached store: memcached_result_create failed");
    }
  }
  MemcachedStore(MemcachedStore&& other) noexcept
      : servers_(std::move(other.servers_)),
        options_(other.options_),
        memc_(std::exchange(other.memc_, nullptr)),
        result_(std::exchange(other.result_, nullptr)),
        suspended_(std::move(other.suspended_)) {}
  MemcachedStore& operator=(MemcachedStore&& other) noexcept {
    if (this != &other) {
      close();
      servers_ = std::move(other.servers_);
      options_ = other.options_;
      memc_ = std::exchange(other.memc_, nullptr);
      result_ = std::exchange(other.result_, nullptr);
      suspended_ = std::move(other.suspended_);
    }
    return *this;
  }
  MemcachedStore(const MemcachedStore&) = delete;
  MemcachedStore& operator=(const MemcachedStore&) = delete;
  ~MemcachedStore() { close(); }

  /// A new connection set to the same servers with the same options (for another thread).
  MemcachedStore clone() const { return MemcachedStore(servers_, options_); }
  const std::vector<MemcachedServer>& servers() const noexcept { return servers_; }
  const MemcachedOptions& options() const noexcept { return options_; }

  std::string describe() const {
    std::string s = "memcached://";
    for (size_t i = 0; i < servers_.size(); ++i) {
      if (i > 0) s += ',';
      s += servers_[i].to_string();
    }
    return s;
  }

  /// The server `key` maps to ("host:port").
  std::string server_of(std::string_view key) {
    memcached_return_t rc = MEMCACHED_SUCCESS;
    const memcached_instance_st* instance =
        memcached_server_by_key(memc_, key.data(), key.size(), &rc);
    if (instance == nullptr) return "?";
    return MemcachedServer{memcached_server_name(instance), memcached_server_port(instance)}
        .to_string();
  }

  /// One batched get; calls on_value(key, bytes) for every value found (see the banner).
  template <class OnValue>
  StoreGetStatus get_many(std::span<const char* const> keys, std::span<const size_t> lengths,
                          OnValue&& on_value) {
    StoreGetStatus status;
    if (keys.empty()) return status;
    if (!suspended_.empty()) {
      // Leave out the keys of servers that recently timed out (see the banner).
      const auto now = std::chrono::steady_clock::now();
      std::erase_if(suspended_, [&](const Suspension& s) { return now >= s.until; });
      if (!suspended_.empty()) {
        kept_keys_.clear();
        kept_lengths_.clear();
        for (size_t k = 0; k < keys.size(); ++k) {
          memcached_return_t by_key_rc = MEMCACHED_SUCCESS;
          const memcached_instance_st* instance =
              memcached_server_by_key(memc_, keys[k], lengths[k], &by_key_rc);
          if (std::none_of(suspended_.begin(), suspended_.end(),
                           [&](const Suspension& s) { return s.instance == instance; })) {
            kept_keys_.push_back(keys[k]);
            kept_lengths_.push_back(lengths[k]);
          }
        }
        status.errors = static_cast<int64_t>(suspended_.size());
        status.first_error = "memcached server " + instance_name(suspended_.front().instance) +
                             " timed out and is skipped for " +
                             std::to_string(options_.retry_timeout_s) + " s";
        keys = kept_keys_;
        lengths = kept_lengths_;
        if (keys.empty()) return status;
      }
    }
    const memcached_return_t rc = memcached_mget(memc_, keys.data(), lengths.data(), keys.size());
    if (rc != MEMCACHED_SUCCESS) {
      note_error(status, rc, "get");
      if (rc != MEMCACHED_SOME_ERRORS) return status;  // no server took the request
    }
    const int64_t error_budget = static_cast<int64_t>(servers_.size()) + 1;
    for (int64_t errors = 0; errors < error_budget;) {
      memcached_return_t fetch_rc = MEMCACHED_SUCCESS;
      memcached_result_st* r = memcached_fetch_result(memc_, result_, &fetch_rc);
      if (r != nullptr) {
        on_value(std::string_view(memcached_result_key_value(r), memcached_result_key_length(r)),
                 std::span<const std::byte>(
                     reinterpret_cast<const std::byte*>(memcached_result_value(r)),
                     memcached_result_length(r)));
        continue;
      }
      if (fetch_rc == MEMCACHED_END || fetch_rc == MEMCACHED_NOTFOUND ||
          fetch_rc == MEMCACHED_SUCCESS)
        break;
      note_error(status, fetch_rc, "fetch");
      ++errors;
      if (fetch_rc == MEMCACHED_TIMEOUT) suspend_timed_out_servers();
    }
    // A server skipped or lost during the get leaves its error here, not in the return codes.
    if (status.errors == 0) {
      const memcached_return_t last = memcached_last_error(memc_);
      if (last != MEMCACHED_SUCCESS && last != MEMCACHED_END && last != MEMCACHED_NOTFOUND)
        note_error(status, last, "get");
    }
    return status;
  }

  /// Stores `value` under `key` with no expiry.
  StorePutStatus put(std::string_view key, std::span<const std::byte> value) {
    StorePutStatus status;
    const memcached_return_t rc =
        memcached_set(memc_, key.data(), key.size(), reinterpret_cast<const char*>(value.data()),
                      value.size(), 0, 0);
    if (rc == MEMCACHED_SUCCESS) return status;
    status.server = server_of(key);
    status.message = memcached_strerror(memc_, rc);
    const std::string detail_message = memcached_last_error_message(memc_);
    if (detail_message != "SUCCESS" && detail_message != status.message)
      status.message += " (" + detail_message + ")";
    const bool out_of_memory = rc == MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE ||
                               rc == MEMCACHED_MEMORY_ALLOCATION_FAILURE ||
                               status.message.find("out of memory") != std::string::npos;
    status.code = out_of_memory ? StorePutStatus::Code::kFull : StorePutStatus::Code::kError;
    return status;
  }

 private:
  void note_error(StoreGetStatus& status, memcached_return_t rc, const char* op) {
    ++status.errors;
    if (status.first_error.empty()) {
      const memcached_instance_st* last = memcached_server_get_last_disconnect(memc_);
      status.first_error =
          std::string("memcached ") + op + " from " + describe() + ": " +
          memcached_strerror(memc_, rc) +
          (last != nullptr ? std::string(" (last disconnected: ") + memcached_server_name(last) +
                                 ":" + std::to_string(memcached_server_port(last)) + ")"
                           : std::string()) +
          ": " + memcached_last_error_message(memc_);
    }
  }
  static std::string instance_name(const memcached_instance_st* instance) {
    return MemcachedServer{memcached_server_name(instance), memcached_server_port(instance)}
        .to_string();
  }
  // libmemcached retries a server whose socket timed out on every request (only refused or failed
  // connections wait for the retry timeout), so a hung server would cost io_timeout_ms per batch:
  // skip the servers whose last error is a timeout for retry_timeout_s instead.
  void suspend_timed_out_servers() {
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::seconds(options_.retry_timeout_s);
    for (uint32_t i = 0; i < memcached_server_count(memc_); ++i) {
      const memcached_instance_st* instance = memcached_server_instance_by_position(memc_, i);
      if (instance == nullptr || memcached_server_error_return(instance) != MEMCACHED_TIMEOUT)
        continue;
      if (std::none_of(suspended_.begin(), suspended_.end(),
                       [&](const Suspension& s) { return s.instance == instance; }))
        suspended_.push_back({instance, until});
    }
  }
  void close() noexcept {
    if (result_ != nullptr) {
      memcached_result_free(result_);  // frees the value buffer only: the struct is ours
      delete result_;
    }
    if (memc_ != nullptr) memcached_free(memc_);
    result_ = nullptr;
    memc_ = nullptr;
  }

  std::vector<MemcachedServer> servers_;
  MemcachedOptions options_;
  memcached_st* memc_ = nullptr;
  memcached_result_st* result_ = nullptr;
  struct Suspension {
    const memcached_instance_st* instance;
    std::chrono::steady_clock::time_point until;
  };
  std::vector<Suspension> suspended_;
  std::vector<const char*> kept_keys_;
  std::vector<size_t> kept_lengths_;
};
static_assert(PageStore<MemcachedStore>);

/// Rows of a packed table from a memcached pool (missing pages reported, not served).
using RemoteTier = RemoteTierT<MemcachedStore>;
static_assert(PartialRowTier<RemoteTier>);
/// The pool in front of the durable packed file.
using RemoteWithFallback = FallbackTierT<RemoteTier, DirectIOTier>;
static_assert(RowTier<RemoteWithFallback>);
/// ... behind a hot-row cache.
using CachedRemoteWithFallback = CachedTier<RemoteWithFallback>;

/// The pool of `uri` in front of its fallback file (uri.fallback is required).
inline std::unique_ptr<RemoteWithFallback> open_remote_with_fallback(
    const MemcachedUri& uri, DirectIOOptions io = {}, RemoteTierOptions remote = {}) {
  ENGRAM_CHECK(!uri.fallback.empty(), "memcached table URI needs ?fallback=TABLE.engram (the ",
               "durable copy that holds the layout and checksums and serves missing pages)");
  auto file = std::make_shared<const PackedTableFile>(uri.fallback);
  return std::make_unique<RemoteWithFallback>(
      std::piecewise_construct,
      std::forward_as_tuple(file, MemcachedStore(uri.servers, uri.options), remote),
      std::forward_as_tuple(uri.fallback, io));
}

/// A table opened from a memcached:// URI: the fallback file's metadata and the type-erased
/// tier (what open_table in open_table.hpp returns for this scheme).
struct MemcachedTable {
  PackedTableInfo info;
  AnyTier tier;
};

/// Opens `uri_text` as RemoteWithFallback, behind a CachedTier when the URI's cache_mb (else
/// `cache_bytes`) is positive.
inline MemcachedTable open_memcached_any_tier(std::string_view uri_text, int64_t cache_bytes = 0,
                                              const DirectIOOptions& io = {}) {
  const MemcachedUri uri = parse_memcached_uri(uri_text);
  ENGRAM_CHECK(!uri.fallback.empty(), "table URI '", uri_text,
               "': needs ?fallback=TABLE.engram (the durable copy that holds the layout and page "
               "checksums and serves the pages the pool misses)");
  auto file = std::make_shared<const PackedTableFile>(uri.fallback);
  PackedTableInfo info = file->info();
  if (uri.cache_mb > 0) cache_bytes = uri.cache_mb << 20;
  if (cache_bytes <= 0)
    return {std::move(info),
            AnyTier::make<RemoteWithFallback>(
                std::piecewise_construct,
                std::forward_as_tuple(file, MemcachedStore(uri.servers, uri.options),
                                      RemoteTierOptions{}),
                std::forward_as_tuple(uri.fallback, io))};
  CacheOptions cache;
  cache.capacity_bytes = cache_bytes;
  return {std::move(info), AnyTier::make<CachedRemoteWithFallback>(
                               cache, std::piecewise_construct,
                               std::forward_as_tuple(file, MemcachedStore(uri.servers, uri.options),
                                                     RemoteTierOptions{}),
                               std::forward_as_tuple(uri.fallback, io))};
}

}  // namespace engram
