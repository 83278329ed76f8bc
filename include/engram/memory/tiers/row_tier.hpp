// engram/memory/tiers/row_tier.hpp: the RowTier concept, i.e. where an Engram table's rows live
// (RAM, an SSD file, a cache in front of either, a remote store) and how a batch of them is copied
// into a staging buffer.
//
// A tier deals in *encoded row bytes*: row g is `row_bytes` bytes, exactly what the table's codec
// stores (codec.hpp); for codecs with scales (FP8 E4M3 + E8M0) a row record is the row's data bytes
// followed by its scale bytes, so one row is one contiguous record:
//   record(g) = data[g] (Codec::row_bytes(d) bytes) ++ scales[g] (Codec::scale_bytes(d) bytes)
// Decoding happens after staging (EmbeddingTableT / codec decode_row on the staged records).
//
// Semantics of one batch, ids [n] global row ids (column offset + hash id), out [>= n * row_bytes]:
//   for i in [0, n): out[i * row_bytes, (i + 1) * row_bytes) = record(ids[i])
// Duplicated ids are allowed (each position is written); an empty batch is allowed.
//
// Contract every tier keeps (tests/memory/tiers/tier_conformance_test.cpp checks it for every
// tier):
// - All or nothing: fetch either writes every requested row and returns a FetchReport, or throws
//   engram::Error for that batch (id out of range, staging buffer too small, I/O error, short read,
//   checksum mismatch). It never returns zeroed, stale or partial rows; after a throw the contents
//   of `out` are unspecified and must not be used. Bytes of `out` past n * row_bytes are untouched.
// - A fetch is synchronous and batched. Tiers whose medium is slow (SSD, network) overlap it with
//   compute by being driven from a worker thread (prefetch.hpp), so a remote or distributed store
//   only needs a blocking, batched, possibly failing fetch(ids, out).
// - Thread safety: one fetch at a time per tier object unless the tier says otherwise (InMemoryTier
//   allows concurrent fetches). Counters read through const accessors may be read concurrently.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "engram/error.hpp"

namespace engram {

/// What one fetch did. `rows` is the batch size; the per-source counts say where rows came from
/// (they sum to `rows` except that a CachedTier fetches a row missed twice in one batch once).
struct FetchReport {
  int64_t rows = 0;               ///< rows written to the staging buffer (= ids.size())
  int64_t rows_from_memory = 0;   ///< copied from a table in RAM
  int64_t rows_from_cache = 0;    ///< served by a CachedTier's resident rows (hits)
  int64_t rows_from_storage = 0;  ///< read from the backing store (file, device, remote)
  int64_t bytes_read = 0;         ///< bytes read from the medium (RAM: rows x row_bytes; storage:
                                  ///< whole pages, including rows nobody asked for)
  int64_t pages_read = 0;         ///< storage pages read, after de-duplication
  // Where rows_from_storage came from, for composed tiers (fallback_tier.hpp); 0 for plain tiers.
  int64_t rows_from_remote = 0;    ///< of rows_from_storage: served by a remote pool
  int64_t rows_from_fallback = 0;  ///< of rows_from_storage: served by a durable fallback tier
                                   ///< because the primary tier missed them (missing, dead or
                                   ///< corrupted page)

  FetchReport& operator+=(const FetchReport& other) noexcept {
    rows += other.rows;
    rows_from_memory += other.rows_from_memory;
    rows_from_cache += other.rows_from_cache;
    rows_from_storage += other.rows_from_storage;
    bytes_read += other.bytes_read;
    pages_read += other.pages_read;
    rows_from_remote += other.rows_from_remote;
    rows_from_fallback += other.rows_from_fallback;
    return *this;
  }
  friend bool operator==(const FetchReport&, const FetchReport&) = default;
};

/// A store of `num_rows()` encoded rows of `row_bytes()` bytes each that copies batches of rows
/// into a staging buffer (see the contract above).
///   num_rows(), row_bytes()      noexcept, constant for the tier's lifetime
///   describe()                   one line for logs: kind, mode (e.g. io_uring + O_DIRECT), source
///   fetch(ids, out)              the batch copy; throws engram::Error for the batch on failure
template <class T>
concept RowTier = requires(T& tier, const T& const_tier, std::span<const int64_t> ids,
                           std::span<std::byte> out) {
  { const_tier.num_rows() }
  noexcept->std::same_as<int64_t>;
  { const_tier.row_bytes() }
  noexcept->std::same_as<int64_t>;
  { const_tier.describe() } -> std::convertible_to<std::string>;
  { tier.fetch(ids, out) } -> std::same_as<FetchReport>;
};

namespace detail {

/// Throws unless `out` holds ids.size() rows and every id is in [0, num_rows); `tier` names the
/// tier (and its file) in the message.
inline void check_fetch_args(std::string_view tier, std::span<const int64_t> ids,
                             std::span<const std::byte> out, int64_t num_rows, int64_t row_bytes) {
  const auto n = static_cast<int64_t>(ids.size());
  ENGRAM_CHECK(static_cast<int64_t>(out.size()) / row_bytes >= n, tier, ": staging buffer of ",
               out.size(), " bytes cannot hold ", n, " rows of ", row_bytes, " bytes");
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ids[static_cast<size_t>(i)];
    ENGRAM_CHECK(id >= 0 && id < num_rows, tier, ": row id ", id, " at batch position ", i,
                 " is out of range [0, ", num_rows, ")");
  }
}

}  // namespace detail
}  // namespace engram
