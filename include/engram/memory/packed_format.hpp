// engram/memory/packed_format.hpp: the packed on-disk table format `*.engram` (one Engram layer's
// table, rows packed into checksummed pages for O_DIRECT reads): constants, metadata
// (PackedTableInfo: config, layer, codec from codec_registry.hpp, primes, multipliers), the layout
// arithmetic and the header encoding. Writer: packed_writer.hpp; reader: tiers/packed_file.hpp.
//
// File layout (little-endian, version 1; byte offsets in docs/design/memory.md):
//   [0, 128)           fixed header: magic "ENGRAMPK", version, sizes, layout, header checksum
//   [128, 128 + json)  metadata JSON (PackedTableInfo::to_json)
//   zero padding to data_offset (a multiple of 4096)
//   num_pages pages    page p holds rows [p * rows_per_page, (p + 1) * rows_per_page), zero-filled
//   checksum table     num_pages u64: XXH3-64(page bytes, seed = page index)
//   footer (64 bytes)  magic "ENGRAMFT", counts, checksums of the table, header and footer
// page_bytes = 4096 when row_bytes <= 4096, else row_bytes rounded up to 4096: a row never
// straddles pages. A row record is the codec's data bytes then its scale bytes.
//
// Guarantees: PackedTableInfo::validate / from_json throw engram::Error naming the source and the
// field; PackedLayout::compute is a pure function of (row_bytes, num_rows, json_bytes).
// Thread safety: plain values and pure functions.
//
//   auto info = engram::PackedTableInfo::make(config, layer, "bf16", primes, multipliers);
//   auto layout = engram::PackedLayout::compute(info.row_bytes(), info.num_rows, json_bytes);
#pragma once

#include <xxhash.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engram/config.hpp"
#include "engram/detail/compiled.hpp"
#include "engram/error.hpp"
#include "engram/memory/codec_registry.hpp"
#include "engram/memory/detail/io.hpp"

namespace engram {

/// Format constants of the packed table file.
struct PackedFormat {
  static constexpr std::string_view kMagic = "ENGRAMPK";
  static constexpr std::string_view kFooterMagic = "ENGRAMFT";
  static constexpr uint32_t kVersion = 1;
  static constexpr int64_t kHeaderBytes = 128;
  static constexpr int64_t kFooterBytes = 64;
  static constexpr int64_t kBasePageBytes = 4096;
  static constexpr uint64_t kChecksumXxh3 = 1;
  static constexpr int64_t kMaxJsonBytes = int64_t{64} << 20;
};

/// What a packed table holds: one layer's table, its codec and the hashing metadata needed to use
/// it. num_rows = sum(primes); offsets[c] = primes[0] + ... + primes[c - 1].
struct PackedTableInfo {
  EngramConfig config;
  int64_t layer_id = 0;
  std::string codec = "f32";  ///< a registered codec's kName (codec_registry.hpp)
  int64_t row_dim = 0;        ///< values per row; equals config.row_dim()
  int64_t num_rows = 0;
  std::vector<int64_t> offsets;      ///< [num_columns] first global row of each column
  std::vector<int64_t> primes;       ///< [num_columns] rows of each column
  std::vector<int64_t> multipliers;  ///< [max_ngram_size] the layer's odd hash multipliers

  /// Info for `layer` of `config` with the given per-column primes; offsets and num_rows derived.
  static PackedTableInfo make(const EngramConfig& config, int64_t layer, std::string codec,
                              std::vector<int64_t> primes, std::vector<int64_t> multipliers) {
    PackedTableInfo info;
    info.config = config;
    info.layer_id = layer;
    info.codec = std::move(codec);
    info.row_dim = config.row_dim();
    int64_t total = 0;
    for (int64_t p : primes) {
      info.offsets.push_back(total);
      total += p;
    }
    info.num_rows = total;
    info.primes = std::move(primes);
    info.multipliers = std::move(multipliers);
    info.validate("packed table info");
    return info;
  }

  /// The codec's traits (codec_registry.hpp), or nullptr for an unknown codec.
  const CodecTraits* codec_traits() const noexcept { return find_codec(codec, config.quant_block); }
  /// Row data bytes (Codec::row_bytes; 0 for an unknown codec).
  int64_t data_bytes_per_row() const noexcept {
    const CodecTraits* t = codec_traits();
    return t != nullptr ? t->row_bytes(row_dim) : 0;
  }
  /// Scale bytes per row (Codec::scale_bytes: ceil(row_dim / quant_block) for fp8_e4m3, else 0).
  int64_t scale_bytes_per_row() const noexcept {
    const CodecTraits* t = codec_traits();
    return t != nullptr ? t->scale_bytes(row_dim) : 0;
  }
  /// Bytes of one row record: data bytes then scale bytes.
  int64_t row_bytes() const noexcept { return data_bytes_per_row() + scale_bytes_per_row(); }

  /// Throws naming `source` and the field unless the info is consistent.
  ENGRAM_INLINE void validate(const std::string& source) const;

  /// The metadata object written into a packed file.
  ENGRAM_INLINE nlohmann::json to_json() const;

  /// Reads and validates the metadata object of a packed file; errors name `source`.
  ENGRAM_INLINE static PackedTableInfo from_json(const nlohmann::json& j,
                                                 const std::string& source);
};

/// Where everything is in a packed file; a pure function of (row_bytes, num_rows, json_bytes).
struct PackedLayout {
  int64_t row_bytes = 0;
  int64_t page_bytes = 0;
  int64_t rows_per_page = 0;
  int64_t num_rows = 0;
  int64_t num_pages = 0;
  int64_t json_bytes = 0;
  int64_t data_offset = 0;
  int64_t checksum_table_offset = 0;
  int64_t footer_offset = 0;
  int64_t file_bytes = 0;

  static PackedLayout compute(int64_t row_bytes, int64_t num_rows, int64_t json_bytes) {
    PackedLayout l;
    l.row_bytes = row_bytes;
    l.page_bytes = row_bytes <= PackedFormat::kBasePageBytes
                       ? PackedFormat::kBasePageBytes
                       : detail::align_up(row_bytes, PackedFormat::kBasePageBytes);
    l.rows_per_page = l.page_bytes / row_bytes;
    l.num_rows = num_rows;
    l.num_pages = (num_rows + l.rows_per_page - 1) / l.rows_per_page;
    l.json_bytes = json_bytes;
    l.data_offset =
        detail::align_up(PackedFormat::kHeaderBytes + json_bytes, PackedFormat::kBasePageBytes);
    l.checksum_table_offset = l.data_offset + l.num_pages * l.page_bytes;
    l.footer_offset = l.checksum_table_offset + 8 * l.num_pages;
    l.file_bytes = l.footer_offset + PackedFormat::kFooterBytes;
    return l;
  }
  /// File offset of page p.
  int64_t page_offset(int64_t page) const noexcept { return data_offset + page * page_bytes; }
  friend bool operator==(const PackedLayout&, const PackedLayout&) = default;
};

namespace detail {

inline uint64_t xxh3_64(const void* data, int64_t bytes, uint64_t seed = 0) noexcept {
  return XXH3_64bits_withSeed(data, static_cast<size_t>(bytes), seed);
}

inline std::string hex64(uint64_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << v;
  return os.str();
}

/// The fixed 128-byte header with its checksum field zeroed, followed by the JSON.
inline std::vector<std::byte> encode_packed_header(const PackedLayout& l, std::string_view json) {
  std::vector<std::byte> h(static_cast<size_t>(PackedFormat::kHeaderBytes + l.json_bytes));
  std::memcpy(h.data(), PackedFormat::kMagic.data(), 8);
  store_le32(h.data() + 8, PackedFormat::kVersion);
  store_le32(h.data() + 12, static_cast<uint32_t>(PackedFormat::kHeaderBytes));
  store_le64(h.data() + 16, static_cast<uint64_t>(l.json_bytes));
  store_le64(h.data() + 24, static_cast<uint64_t>(l.data_offset));
  store_le64(h.data() + 32, static_cast<uint64_t>(l.page_bytes));
  store_le64(h.data() + 40, static_cast<uint64_t>(l.row_bytes));
  store_le64(h.data() + 48, static_cast<uint64_t>(l.rows_per_page));
  store_le64(h.data() + 56, static_cast<uint64_t>(l.num_rows));
  store_le64(h.data() + 64, static_cast<uint64_t>(l.num_pages));
  store_le64(h.data() + 72, static_cast<uint64_t>(l.checksum_table_offset));
  store_le64(h.data() + 80, static_cast<uint64_t>(l.file_bytes));
  store_le64(h.data() + 88, PackedFormat::kChecksumXxh3);
  std::memcpy(h.data() + PackedFormat::kHeaderBytes, json.data(), json.size());
  store_le64(h.data() + 120, xxh3_64(h.data(), static_cast<int64_t>(h.size())));
  return h;
}

/// Groups a batch's positions by packed page: keys[0, n) = (page << 32 | position) sorted
/// ascending, pages = the distinct pages ascending, group_begin[k] = the first key index of
/// pages[k], then n. Callers check n < 2^32. Reuses the vectors' storage (no steady-state
/// allocation).
inline void group_rows_by_page(std::span<const int64_t> ids, int64_t rows_per_page,
                               std::vector<uint64_t>& keys, std::vector<int64_t>& pages,
                               std::vector<size_t>& group_begin) {
  const size_t n = ids.size();
  if (keys.size() < n) keys.resize(n);
  for (size_t i = 0; i < n; ++i)
    keys[i] = static_cast<uint64_t>(ids[i] / rows_per_page) << 32 | static_cast<uint64_t>(i);
  std::sort(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(n));
  pages.clear();
  group_begin.clear();
  for (size_t j = 0; j < n; ++j) {
    const auto page = static_cast<int64_t>(keys[j] >> 32);
    if (pages.empty() || pages.back() != page) {
      pages.push_back(page);
      group_begin.push_back(j);
    }
  }
  group_begin.push_back(n);
}

}  // namespace detail

}  // namespace engram

#if ENGRAM_DEFINITIONS
#include "engram/memory/detail/packed_format_impl.hpp"
#endif
