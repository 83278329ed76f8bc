// engram/memory/tiers/open_table.hpp: opens an Engram table by a URI that says where its rows live,
// returning the table's metadata and an AnyTier over the rows (any_tier.hpp).
//
//   file:TABLE.engram[?cache_mb=N][&io=direct|buffered|mmap]     (a plain path is file:)
//     io=direct (default) DirectIOTier, O_DIRECT; io=buffered through the page cache;
//     io=mmap InMemoryTier over the mapped file (pages verified once); cache_mb=N a CachedTier
//   safetensors:SHARD?tensor=NAME[&scale=NAME][&scale_shard=SHARD2][&io=..][&cache_mb=N]
//     a table inside a safetensors shard as shipped (SafetensorsTier)
//   hf:DIR?layer=L[&io=..][&cache_mb=N]
//     layer L's table of a Hugging Face checkpoint directory (TableOpenOptions::table_info gives
//     the hashing metadata the shards lack)
//   memcached://... (memcached_store.hpp)
// TableOpenOptions::cache_bytes applies when the URI gives no cache_mb. Details and how to add a
// scheme: docs/design/memory.md.
//
// Errors: engram::Error naming the URI and what was wrong (unknown scheme or parameter, bad value)
// or the file (PackedTableFile's validation).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "engram/detail/compiled.hpp"
#include "engram/memory/packed_format.hpp"
#include "engram/memory/tiers/any_tier.hpp"
#include "engram/memory/tiers/io_options.hpp"

namespace engram {

/// Defaults for what a URI does not say.
struct TableOpenOptions {
  int64_t cache_bytes = 0;         ///< CachedTier capacity when the URI has no cache_mb (0 = none)
  DirectIOOptions direct_io = {};  ///< reader backend, queue depth, checksum verification
  /// Hashing metadata of tables whose files have none (safetensors:, hf:); ignored by the others.
  std::optional<PackedTableInfo> table_info = std::nullopt;
};

/// A table opened by open_table: its metadata (config, codec, offsets, primes, multipliers) and
/// its rows.
struct OpenedTable {
  std::string uri;
  PackedTableInfo info;
  AnyTier tier;
};

/// Opens a packed table file (the file: scheme; `uri` is only used in messages).
ENGRAM_INLINE OpenedTable open_file_table(std::string_view uri,
                                          const TableOpenOptions& options = {});

/// Opens a memcached pool in front of its durable packed file (the memcached:// scheme,
/// memcached_uri.hpp: memcached://H:P,H:P?fallback=TABLE.engram[&cache_mb=N]...).
ENGRAM_INLINE OpenedTable open_memcached_table(std::string_view uri,
                                               const TableOpenOptions& options = {});

/// Opens a table inside a safetensors shard (the safetensors: scheme; see the banner).
ENGRAM_INLINE OpenedTable open_safetensors_table(std::string_view uri,
                                                 const TableOpenOptions& options = {});

/// Opens layer L's table of a Hugging Face checkpoint directory (the hf: scheme).
ENGRAM_INLINE OpenedTable open_hf_table(std::string_view uri, const TableOpenOptions& options = {});

/// Opens the table at `uri` (see the banner for the schemes).
ENGRAM_INLINE OpenedTable open_table(std::string_view uri, const TableOpenOptions& options = {});

}  // namespace engram

#if ENGRAM_DEFINITIONS
#include "engram/memory/tiers/detail/open_table_impl.hpp"
#endif
