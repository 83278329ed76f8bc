// engram/memory/tiers/packed_file.hpp: the packed on-disk table format `*.engram` (one Engram
// layer's table, rows packed into checksummed pages for O_DIRECT reads), its streaming writer and
// its validating reader.
//
// File layout (all integers little-endian; version 1):
//   [0, 128)            fixed header
//                         0 magic "ENGRAMPK"         8 u32 version (1)      12 u32 header size
//                         (128)
//                        16 u64 json_bytes          24 u64 data_offset      32 u64 page_bytes
//                        40 u64 row_bytes           48 u64 rows_per_page    56 u64 num_rows
//                        64 u64 num_pages           72 u64 checksum_table_offset
//                        80 u64 file_bytes          88 u64 checksum algorithm (1 = XXH3-64)
//                        96 zero (24 bytes)        120 u64 header checksum
//   [128, 128 + json)   metadata JSON (PackedTableInfo::to_json: the EngramConfig, layer id,
//                       codec, row_dim, bytes per row, per-column offsets and primes, multipliers)
//   zero padding to data_offset (a multiple of 4096)
//   num_pages pages of page_bytes: page p holds rows [p * rows_per_page, (p + 1) * rows_per_page)
//                       back to back from its start, zero-filled after the last row
//   checksum table      num_pages u64: XXH3-64(page bytes, seed = page index)
//   footer (64 bytes)   0 magic "ENGRAMFT"  8 num_pages  16 checksum_table_offset
//                       24 XXH3-64 of the checksum table  32 header checksum  40 file_bytes
//                       48 zero  56 XXH3-64 of footer bytes [0, 56)
//   header checksum = XXH3-64 of bytes [0, 128 + json_bytes) with the checksum field zeroed.
//
// Pages: page_bytes = 4096 when row_bytes <= 4096, else row_bytes rounded up to a multiple of 4096;
// rows_per_page = page_bytes / row_bytes. So a row never straddles two pages and every page read
// is one aligned O_DIRECT request. A row record is the codec's data bytes then its scale bytes.
//
// Why XXH3-64 rather than CRC32C: it is already a dependency (engram::xxhash), runs at memory
// bandwidth (~30 GB/s with AVX2/AVX-512, several times a portable CRC32C), and 64 bits make an
// undetected corruption of a multi-GB table vanishingly unlikely (2^-64 per page versus 2^-32).
// CRC32C's guaranteed detection of short bursts matters for links, not for pages read whole.
// Seeding with the page index also catches a page written at the wrong offset.
//
// Guarantees:
// - PackedTableWriter streams: it holds one chunk of pages (8 MiB by default) and the checksum
//   table (8 bytes per 4 KiB page, 0.2 % of the table), never the table itself. It writes a unique
//   "<path>.tmp.XXXXXX", fsyncs it, renames it to <path> and fsyncs the directory
//   (detail::AtomicFile), so an interrupted pack never leaves a file at <path> that loads, an
//   existing <path> is replaced only on success, and concurrent packs of one path do not mix.
// - PackedTableFile validates on open: magic, version, header size and checksum, JSON metadata,
//   layout arithmetic, exact file size (truncation and trailing bytes), footer and checksum-table
//   checksums. Every failure is an engram::Error naming the file and what was wrong. Pages are not
//   read on open (a 200 GB table opens in milliseconds); they are verified by whoever reads them
//   (DirectIOTier per page read, map_packed_table / verify_pages for the whole file), and a bad
//   page is an Error naming the file and the page.
// Thread safety: a PackedTableFile is immutable after construction (map() is internally
// synchronised); a writer is single-threaded.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engram/error.hpp"
#include "engram/io/config.hpp"
#include "engram/memory/codec_registry.hpp"
#include "engram/memory/detail/io.hpp"
#include "engram/memory/tiers/in_memory_tier.hpp"

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
  void validate(const std::string& source) const {
    config.validate(source);
    config.require_layer(layer_id, source);
    ENGRAM_CHECK(codec_traits() != nullptr, source, ": field 'codec' must be one of ",
                 codec_choices(), ", found '", codec, "' with quant_block ", config.quant_block);
    ENGRAM_CHECK(row_dim == config.row_dim(), source, ": field 'row_dim' is ", row_dim,
                 " but the config implies ", config.row_dim());
    const auto columns = static_cast<size_t>(config.num_columns());
    ENGRAM_CHECK(primes.size() == columns, source, ": field 'primes' has ", primes.size(),
                 " entries, expected (max_ngram_size - 1) * n_head_per_ngram = ", columns);
    ENGRAM_CHECK(offsets.size() == columns, source, ": field 'offsets' has ", offsets.size(),
                 " entries, expected ", columns);
    ENGRAM_CHECK(multipliers.size() == static_cast<size_t>(config.max_ngram_size), source,
                 ": field 'multipliers' has ", multipliers.size(),
                 " entries, expected max_ngram_size = ", config.max_ngram_size);
    int64_t total = 0;
    for (size_t c = 0; c < columns; ++c) {
      ENGRAM_CHECK(primes[c] >= 1, source, ": field 'primes' entry ", c,
                   " must be positive, found ", primes[c]);
      ENGRAM_CHECK(offsets[c] == total, source, ": field 'offsets' entry ", c, " is ", offsets[c],
                   ", expected the sum of the earlier primes ", total);
      ENGRAM_CHECK(!__builtin_add_overflow(total, primes[c], &total), source,
                   ": field 'primes' sums past 2^63");
    }
    ENGRAM_CHECK(num_rows == total, source, ": field 'num_rows' is ", num_rows,
                 ", expected the sum of the primes ", total);
  }

  nlohmann::json to_json() const {
    return {{"format", "engram packed table"},
            {"config", config.to_json()},
            {"layer_id", layer_id},
            {"codec", codec},
            {"row_dim", row_dim},
            {"data_bytes_per_row", data_bytes_per_row()},
            {"scale_bytes_per_row", scale_bytes_per_row()},
            {"num_rows", num_rows},
            {"offsets", offsets},
            {"primes", primes},
            {"multipliers", multipliers},
            {"page_checksum", "XXH3-64, seed = page index"}};
  }

  /// Reads and validates the metadata object of a packed file; errors name `source`.
  static PackedTableInfo from_json(const nlohmann::json& j, const std::string& source) {
    ENGRAM_CHECK(j.is_object(), source, ": metadata must be a JSON object, found ", j.type_name());
    auto field = [&](const char* name) -> const nlohmann::json& {
      ENGRAM_CHECK(j.contains(name), source, ": metadata misses field '", name, "'");
      return j[name];
    };
    auto integer = [&](const char* name) {
      const auto& v = field(name);
      ENGRAM_CHECK(v.is_number_integer(), source, ": metadata field '", name,
                   "' must be an integer, found ", v.dump());
      return v.get<int64_t>();
    };
    auto integers = [&](const char* name) {
      const auto& v = field(name);
      ENGRAM_CHECK(v.is_array(), source, ": metadata field '", name, "' must be an array");
      std::vector<int64_t> out;
      for (const auto& x : v) {
        ENGRAM_CHECK(x.is_number_integer(), source, ": metadata field '", name,
                     "' must hold integers, found ", x.dump());
        out.push_back(x.get<int64_t>());
      }
      return out;
    };
    PackedTableInfo info;
    info.config = EngramConfig::from_json(field("config"), source + " (metadata 'config')");
    info.layer_id = integer("layer_id");
    ENGRAM_CHECK(field("codec").is_string(), source, ": metadata field 'codec' must be a string");
    info.codec = j["codec"].get<std::string>();
    info.row_dim = integer("row_dim");
    info.num_rows = integer("num_rows");
    info.offsets = integers("offsets");
    info.primes = integers("primes");
    info.multipliers = integers("multipliers");
    info.validate(source);
    ENGRAM_CHECK(integer("data_bytes_per_row") == info.data_bytes_per_row() &&
                     integer("scale_bytes_per_row") == info.scale_bytes_per_row(),
                 source, ": metadata bytes per row (", j["data_bytes_per_row"].dump(), " + ",
                 j["scale_bytes_per_row"].dump(), ") disagree with codec ", info.codec,
                 " and row_dim ", info.row_dim, " (", info.data_bytes_per_row(), " + ",
                 info.scale_bytes_per_row(), ")");
    return info;
  }
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

/// Progress of a pack, reported to the writer's callback.
struct PackProgress {
  int64_t rows_done = 0;
  int64_t rows_total = 0;
  int64_t bytes_written = 0;
  double seconds = 0;               ///< since the writer was created
  double megabytes_per_second = 0;  ///< table bytes written per second (1 MB = 10^6 bytes)
  double seconds_left = 0;          ///< estimate at the current rate
};
using PackProgressFn = std::function<void(const PackProgress&)>;

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

/// A read-only shared mapping of a whole file.
class FileMapping {
 public:
  FileMapping(int fd, int64_t bytes, const std::string& path) : bytes_(bytes) {
    void* p = ::mmap(nullptr, static_cast<size_t>(bytes), PROT_READ, MAP_SHARED, fd, 0);
    ENGRAM_CHECK(p != MAP_FAILED, path, ": mmap of ", bytes, " bytes failed: ", errno_text(errno));
    data_ = static_cast<const std::byte*>(p);
  }
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;
  ~FileMapping() { ::munmap(const_cast<std::byte*>(data_), static_cast<size_t>(bytes_)); }
  std::span<const std::byte> bytes() const noexcept { return {data_, static_cast<size_t>(bytes_)}; }

 private:
  const std::byte* data_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace detail

/// Streams rows into a new packed table file (see the banner for the atomicity guarantee).
///
///   engram::PackedTableWriter writer("layer15.engram", info, [](const engram::PackProgress& p) {
///     std::fprintf(stderr, "\r%lld/%lld rows, %.0f MB/s", ...);
///   });
///   for (...) writer.append(record_bytes);    // whole row records, in row order
///   writer.finish();                          // fsync + rename: only now does the file exist
class PackedTableWriter {
 public:
  /// @param path      final file name; a unique "<path>.tmp.XXXXXX" is written meanwhile
  /// @param info      validated metadata (PackedTableInfo::make)
  /// @param progress  called after each written chunk (at most every `progress_interval_s`) and
  ///                  once from finish(); may be empty
  PackedTableWriter(std::string path, PackedTableInfo info, PackProgressFn progress = {},
                    double progress_interval_s = 0.5, int64_t chunk_bytes = int64_t{8} << 20)
      : path_(std::move(path)),
        info_(std::move(info)),
        progress_(std::move(progress)),
        progress_interval_s_(progress_interval_s),
        start_(std::chrono::steady_clock::now()),
        last_progress_(start_) {
    info_.validate(path_);
    json_ = info_.to_json().dump();
    layout_ = PackedLayout::compute(info_.row_bytes(), info_.num_rows,
                                    static_cast<int64_t>(json_.size()));
    chunk_pages_ = std::max<int64_t>(1, chunk_bytes / layout_.page_bytes);
    chunk_ = detail::IoBuffer(chunk_pages_ * layout_.page_bytes);
    checksums_.reserve(static_cast<size_t>(layout_.num_pages));

    std::vector<std::byte> header = detail::encode_packed_header(layout_, json_);
    header.resize(static_cast<size_t>(layout_.data_offset));
    // A member: if the write below throws, its destructor removes the temporary.
    file_.emplace(path_);
    file_->write(header.data(), static_cast<int64_t>(header.size()));
  }
  PackedTableWriter(const PackedTableWriter&) = delete;
  PackedTableWriter& operator=(const PackedTableWriter&) = delete;

  /// Removes the temporary file unless finish() succeeded (AtomicFile's destructor).
  ~PackedTableWriter() = default;

  const PackedTableInfo& info() const noexcept { return info_; }
  const PackedLayout& layout() const noexcept { return layout_; }
  const std::string& temp_path() const noexcept { return file_->temp_path(); }
  int64_t rows_written() const noexcept { return rows_done_; }

  /// Appends whole row records (data bytes then scale bytes), in row order.
  void append(std::span<const std::byte> records) {
    const int64_t rb = layout_.row_bytes;
    ENGRAM_CHECK(static_cast<int64_t>(records.size()) % rb == 0, path_, ": append of ",
                 records.size(), " bytes is not a whole number of ", rb, "-byte rows");
    const int64_t n = static_cast<int64_t>(records.size()) / rb;
    check_room(n);
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(slot(), records.data() + i * rb, static_cast<size_t>(rb));
      advance();
    }
  }

  /// Appends n rows given as separate data [n, data_bytes_per_row] and scale
  /// [n, scale_bytes_per_row] arrays (the safetensors layout of FP8 tables).
  void append_split(std::span<const std::byte> data, std::span<const std::byte> scales) {
    const int64_t db = info_.data_bytes_per_row();
    const int64_t sb = info_.scale_bytes_per_row();
    ENGRAM_CHECK(static_cast<int64_t>(data.size()) % db == 0, path_, ": append_split of ",
                 data.size(), " data bytes is not a whole number of ", db, "-byte rows");
    const int64_t n = static_cast<int64_t>(data.size()) / db;
    ENGRAM_CHECK(static_cast<int64_t>(scales.size()) == n * sb, path_, ": append_split of ", n,
                 " rows needs ", n * sb, " scale bytes, found ", scales.size());
    check_room(n);
    for (int64_t i = 0; i < n; ++i) {
      std::byte* record = slot();
      std::memcpy(record, data.data() + i * db, static_cast<size_t>(db));
      if (sb > 0) std::memcpy(record + db, scales.data() + i * sb, static_cast<size_t>(sb));
      advance();
    }
  }

  /// Writes the checksum table and footer, fsyncs, renames to the final path, fsyncs the
  /// directory. Throws if fewer than num_rows rows were appended.
  void finish() {
    ENGRAM_CHECK(!finished_, path_, ": finish() called twice");
    ENGRAM_CHECK(rows_done_ == layout_.num_rows, path_, ": finish() after ", rows_done_, " of ",
                 layout_.num_rows, " rows");
    if (page_in_chunk_ > 0 || slot_in_page_ > 0) flush_chunk();
    ENGRAM_CHECK(static_cast<int64_t>(checksums_.size()) == layout_.num_pages, path_,
                 ": internal error: ", checksums_.size(), " page checksums for ", layout_.num_pages,
                 " pages");

    std::vector<std::byte> table(static_cast<size_t>(8 * layout_.num_pages));
    for (size_t p = 0; p < checksums_.size(); ++p) detail::store_le64(&table[8 * p], checksums_[p]);
    std::byte footer[PackedFormat::kFooterBytes] = {};
    std::memcpy(footer, PackedFormat::kFooterMagic.data(), 8);
    detail::store_le64(footer + 8, static_cast<uint64_t>(layout_.num_pages));
    detail::store_le64(footer + 16, static_cast<uint64_t>(layout_.checksum_table_offset));
    detail::store_le64(footer + 24, detail::xxh3_64(table.data(), 8 * layout_.num_pages));
    const std::vector<std::byte> header = detail::encode_packed_header(layout_, json_);
    detail::store_le64(footer + 32, detail::load_le64(header.data() + 120));
    detail::store_le64(footer + 40, static_cast<uint64_t>(layout_.file_bytes));
    detail::store_le64(footer + 56, detail::xxh3_64(footer, 56));
    file_->write(table.data(), static_cast<int64_t>(table.size()));
    file_->write(footer, PackedFormat::kFooterBytes);
    file_->commit();  // fsync, rename, fsync the directory
    finished_ = true;
    report_progress(true);
  }

 private:
  void check_room(int64_t n) const {
    ENGRAM_CHECK(!finished_, path_, ": append after finish()");
    ENGRAM_CHECK(n <= layout_.num_rows - rows_done_, path_, ": appending ", n, " rows after ",
                 rows_done_, " overflows the table's ", layout_.num_rows, " rows");
  }

  // The next free row slot in the chunk; advance() after filling it.
  std::byte* slot() noexcept {
    return chunk_.data() + page_in_chunk_ * layout_.page_bytes + slot_in_page_ * layout_.row_bytes;
  }
  void advance() {
    ++rows_done_;
    if (++slot_in_page_ == layout_.rows_per_page) {
      slot_in_page_ = 0;
      if (++page_in_chunk_ == chunk_pages_) flush_chunk();
    }
  }

  // Writes the filled pages of the chunk (the last one possibly partial, zero-filled).
  void flush_chunk() {
    const int64_t pages = page_in_chunk_ + (slot_in_page_ > 0 ? 1 : 0);
    for (int64_t p = 0; p < pages; ++p) {
      const auto page_index = static_cast<uint64_t>(checksums_.size());
      checksums_.push_back(
          detail::xxh3_64(chunk_.data() + p * layout_.page_bytes, layout_.page_bytes, page_index));
    }
    file_->write(chunk_.data(), pages * layout_.page_bytes);
    bytes_written_ += pages * layout_.page_bytes;
    std::memset(chunk_.data(), 0, static_cast<size_t>(pages * layout_.page_bytes));
    page_in_chunk_ = 0;
    slot_in_page_ = 0;
    report_progress(false);
  }

  void report_progress(bool final_call) {
    if (!progress_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!final_call &&
        std::chrono::duration<double>(now - last_progress_).count() < progress_interval_s_)
      return;
    last_progress_ = now;
    PackProgress p;
    p.rows_done = rows_done_;
    p.rows_total = layout_.num_rows;
    p.bytes_written = bytes_written_;
    p.seconds = std::chrono::duration<double>(now - start_).count();
    const double rate = p.seconds > 0 ? static_cast<double>(rows_done_) / p.seconds : 0;
    p.megabytes_per_second =
        p.seconds > 0 ? static_cast<double>(bytes_written_) / p.seconds / 1e6 : 0;
    p.seconds_left = rate > 0 ? static_cast<double>(layout_.num_rows - rows_done_) / rate : 0;
    progress_(p);
  }

  std::string path_;
  PackedTableInfo info_;
  std::string json_;
  PackedLayout layout_;
  PackProgressFn progress_;
  double progress_interval_s_;
  std::chrono::steady_clock::time_point start_, last_progress_;
  std::optional<detail::AtomicFile> file_;  // the temporary, renamed to path_ by finish()
  detail::IoBuffer chunk_;
  int64_t chunk_pages_ = 1;
  int64_t page_in_chunk_ = 0;
  int64_t slot_in_page_ = 0;
  int64_t rows_done_ = 0;
  int64_t bytes_written_ = 0;
  std::vector<uint64_t> checksums_;
  bool finished_ = false;
};

/// An opened, validated packed table file (see the banner). Holds a buffered descriptor, the
/// metadata and the page checksum table; pages are read by tiers.
class PackedTableFile {
 public:
  explicit PackedTableFile(std::string path) : path_(std::move(path)) {
    fd_ = detail::FileDescriptor(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    ENGRAM_CHECK(fd_.valid(), path_, ": cannot open packed table: ", detail::errno_text(errno));
    const int64_t size = detail::file_size(fd_.get(), path_);

    std::byte fixed[PackedFormat::kHeaderBytes] = {};
    const auto got = detail::pread_full(fd_.get(), fixed, PackedFormat::kHeaderBytes, 0);
    ENGRAM_CHECK(got.error == 0, path_,
                 ": I/O error reading the header: ", detail::errno_text(got.error));
    ENGRAM_CHECK(got.bytes >= 8, path_, ": truncated: ", size,
                 " bytes cannot even hold the 8-byte magic of an engram packed table");
    ENGRAM_CHECK(std::memcmp(fixed, PackedFormat::kMagic.data(), 8) == 0, path_,
                 ": not an engram packed table (bad magic ",
                 printable(std::span<const std::byte>(fixed, 8)), ", expected \"",
                 PackedFormat::kMagic, "\")");
    ENGRAM_CHECK(got.bytes == PackedFormat::kHeaderBytes, path_, ": truncated: ", size,
                 " bytes cannot hold the ", PackedFormat::kHeaderBytes, "-byte header");
    const uint32_t version = detail::load_le32(fixed + 8);
    ENGRAM_CHECK(version == PackedFormat::kVersion, path_, ": unsupported packed table version ",
                 version, " (this build reads version ", PackedFormat::kVersion, ")");
    ENGRAM_CHECK(detail::load_le32(fixed + 12) == PackedFormat::kHeaderBytes, path_,
                 ": header size field is ", detail::load_le32(fixed + 12), ", expected ",
                 PackedFormat::kHeaderBytes);
    const uint64_t json_bytes = detail::load_le64(fixed + 16);
    ENGRAM_CHECK(json_bytes > 0 && json_bytes <= static_cast<uint64_t>(PackedFormat::kMaxJsonBytes),
                 path_, ": metadata size ", json_bytes, " is out of range (1..",
                 PackedFormat::kMaxJsonBytes, ")");
    ENGRAM_CHECK(PackedFormat::kHeaderBytes + static_cast<int64_t>(json_bytes) <= size, path_,
                 ": truncated: ", size, " bytes cannot hold the header and its ", json_bytes,
                 "-byte metadata");

    // Header checksum over fixed header (checksum field zeroed) + JSON.
    std::vector<std::byte> header(static_cast<size_t>(PackedFormat::kHeaderBytes) + json_bytes);
    std::memcpy(header.data(), fixed, PackedFormat::kHeaderBytes);
    detail::pread_exact(fd_.get(), header.data() + PackedFormat::kHeaderBytes,
                        static_cast<int64_t>(json_bytes), PackedFormat::kHeaderBytes, path_,
                        "the metadata");
    const uint64_t stored_header_checksum = detail::load_le64(fixed + 120);
    detail::store_le64(header.data() + 120, 0);
    const uint64_t header_checksum =
        detail::xxh3_64(header.data(), static_cast<int64_t>(header.size()));
    ENGRAM_CHECK(header_checksum == stored_header_checksum, path_,
                 ": header checksum mismatch (stored ", detail::hex64(stored_header_checksum),
                 ", computed ", detail::hex64(header_checksum), "): the header is corrupted");
    ENGRAM_CHECK(detail::load_le64(fixed + 88) == PackedFormat::kChecksumXxh3, path_,
                 ": unknown page checksum algorithm ", detail::load_le64(fixed + 88));

    // Metadata, then the layout it implies must match the stored one field by field.
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(
          reinterpret_cast<const char*>(header.data()) + PackedFormat::kHeaderBytes,
          reinterpret_cast<const char*>(header.data()) + header.size());
    } catch (const nlohmann::json::exception& e) {
      detail::fail(path_, ": metadata is not valid JSON: ", e.what());
    }
    info_ = PackedTableInfo::from_json(j, path_);
    layout_ =
        PackedLayout::compute(info_.row_bytes(), info_.num_rows, static_cast<int64_t>(json_bytes));
    check_field(fixed, 24, layout_.data_offset, "data_offset");
    check_field(fixed, 32, layout_.page_bytes, "page_bytes");
    check_field(fixed, 40, layout_.row_bytes, "row_bytes");
    check_field(fixed, 48, layout_.rows_per_page, "rows_per_page");
    check_field(fixed, 56, layout_.num_rows, "num_rows");
    check_field(fixed, 64, layout_.num_pages, "num_pages");
    check_field(fixed, 72, layout_.checksum_table_offset, "checksum_table_offset");
    check_field(fixed, 80, layout_.file_bytes, "file_bytes");
    ENGRAM_CHECK(size >= layout_.file_bytes, path_, ": truncated: ", size,
                 " bytes, the header says ", layout_.file_bytes, " (", layout_.num_pages,
                 " pages of ", layout_.page_bytes, " bytes, checksum table and footer)");
    ENGRAM_CHECK(size == layout_.file_bytes, path_, ": ", size - layout_.file_bytes,
                 " unexpected trailing bytes after the footer (file is ", size,
                 " bytes, the header says ", layout_.file_bytes, ")");

    // Footer, then the checksum table it vouches for.
    std::byte footer[PackedFormat::kFooterBytes];
    detail::pread_exact(fd_.get(), footer, PackedFormat::kFooterBytes, layout_.footer_offset, path_,
                        "the footer");
    ENGRAM_CHECK(std::memcmp(footer, PackedFormat::kFooterMagic.data(), 8) == 0, path_,
                 ": bad footer magic ", printable(std::span<const std::byte>(footer, 8)),
                 " (expected \"", PackedFormat::kFooterMagic, "\"): file truncated or corrupted");
    ENGRAM_CHECK(detail::load_le64(footer + 56) == detail::xxh3_64(footer, 56), path_,
                 ": footer checksum mismatch: the footer is corrupted");
    ENGRAM_CHECK(detail::load_le64(footer + 8) == static_cast<uint64_t>(layout_.num_pages) &&
                     detail::load_le64(footer + 16) ==
                         static_cast<uint64_t>(layout_.checksum_table_offset) &&
                     detail::load_le64(footer + 32) == stored_header_checksum &&
                     detail::load_le64(footer + 40) == static_cast<uint64_t>(layout_.file_bytes),
                 path_,
                 ": footer disagrees with the header (file assembled from different packs?)");
    std::vector<std::byte> table(static_cast<size_t>(8 * layout_.num_pages));
    detail::pread_exact(fd_.get(), table.data(), 8 * layout_.num_pages,
                        layout_.checksum_table_offset, path_, "the page checksum table");
    const uint64_t table_checksum = detail::xxh3_64(table.data(), 8 * layout_.num_pages);
    ENGRAM_CHECK(table_checksum == detail::load_le64(footer + 24), path_,
                 ": page checksum table is corrupted (its checksum is ",
                 detail::hex64(table_checksum), ", the footer says ",
                 detail::hex64(detail::load_le64(footer + 24)), ")");
    checksums_.resize(static_cast<size_t>(layout_.num_pages));
    for (size_t p = 0; p < checksums_.size(); ++p) checksums_[p] = detail::load_le64(&table[8 * p]);
    mapping_state_ = std::make_unique<MappingState>();
  }

  PackedTableFile(PackedTableFile&&) noexcept = default;
  PackedTableFile& operator=(PackedTableFile&&) noexcept = default;

  const std::string& path() const noexcept { return path_; }
  const PackedTableInfo& info() const noexcept { return info_; }
  const PackedLayout& layout() const noexcept { return layout_; }
  int64_t num_rows() const noexcept { return layout_.num_rows; }
  int64_t row_bytes() const noexcept { return layout_.row_bytes; }
  int64_t num_pages() const noexcept { return layout_.num_pages; }

  /// Stored checksum of page p (0 <= p < num_pages(), unchecked).
  uint64_t page_checksum(int64_t page) const noexcept {
    return checksums_[static_cast<size_t>(page)];
  }
  /// Checksum of page bytes as stored for page p.
  static uint64_t compute_page_checksum(const std::byte* data, int64_t page_bytes,
                                        int64_t page) noexcept {
    return detail::xxh3_64(data, page_bytes, static_cast<uint64_t>(page));
  }
  /// Whether `data` (page_bytes bytes) is the intact page p.
  bool page_ok(int64_t page, const std::byte* data) const noexcept {
    return compute_page_checksum(data, layout_.page_bytes, page) == page_checksum(page);
  }
  /// The error message for page p whose bytes have checksum `computed` (not the stored one).
  std::string page_error(int64_t page, uint64_t computed) const {
    const int64_t first = page * layout_.rows_per_page;
    const int64_t last = std::min(first + layout_.rows_per_page, layout_.num_rows) - 1;
    return detail::concat(path_, ": checksum mismatch in page ", page, " (rows ", first, "..", last,
                          ", file offset ", layout_.page_offset(page), "): stored ",
                          detail::hex64(page_checksum(page)), ", computed ",
                          detail::hex64(computed), "; the file is corrupted");
  }

  /// Reads every page through the page cache and checks its checksum; throws naming the first bad
  /// page. `progress(pages_done, num_pages)` is called every 256 MiB or so when given.
  void verify_pages(const std::function<void(int64_t, int64_t)>& progress = {}) const {
    const int64_t pages_per_read = std::max<int64_t>(1, (int64_t{8} << 20) / layout_.page_bytes);
    detail::IoBuffer buffer(pages_per_read * layout_.page_bytes);
    int64_t since_report = 0;
    for (int64_t first = 0; first < layout_.num_pages; first += pages_per_read) {
      const int64_t n = std::min(pages_per_read, layout_.num_pages - first);
      detail::pread_exact(fd_.get(), buffer.data(), n * layout_.page_bytes,
                          layout_.page_offset(first), path_, "pages");
      for (int64_t p = 0; p < n; ++p) {
        const std::byte* data = buffer.data() + p * layout_.page_bytes;
        const uint64_t computed = compute_page_checksum(data, layout_.page_bytes, first + p);
        if (computed != page_checksum(first + p)) throw Error(page_error(first + p, computed));
      }
      since_report += n * layout_.page_bytes;
      if (progress && (since_report >= (int64_t{256} << 20) || first + n == layout_.num_pages)) {
        progress(first + n, layout_.num_pages);
        since_report = 0;
      }
    }
  }

  /// The whole file mapped read-only (created on first call, shared afterwards).
  std::shared_ptr<const detail::FileMapping> map() const {
    std::lock_guard lock(mapping_state_->mutex);
    if (!mapping_state_->mapping)
      mapping_state_->mapping =
          std::make_shared<const detail::FileMapping>(fd_.get(), layout_.file_bytes, path_);
    return mapping_state_->mapping;
  }

 private:
  struct MappingState {
    std::mutex mutex;
    std::shared_ptr<const detail::FileMapping> mapping;
  };

  void check_field(const std::byte* fixed, int offset, int64_t expected, const char* name) const {
    const uint64_t stored = detail::load_le64(fixed + offset);
    ENGRAM_CHECK(stored == static_cast<uint64_t>(expected), path_, ": header field '", name,
                 "' is ", stored, ", but the metadata implies ", expected);
  }

  static std::string printable(std::span<const std::byte> bytes) {
    std::string s = "\"";
    for (std::byte b : bytes) {
      const auto c = static_cast<unsigned char>(b);
      if (c >= 0x20 && c < 0x7F) {
        s += static_cast<char>(c);
      } else {
        static constexpr char kHex[] = "0123456789abcdef";
        s += "\\x";
        s += kHex[c >> 4];
        s += kHex[c & 15];
      }
    }
    return s + "\"";
  }

  std::string path_;
  detail::FileDescriptor fd_;
  PackedTableInfo info_;
  PackedLayout layout_;
  std::vector<uint64_t> checksums_;
  std::unique_ptr<MappingState> mapping_state_;
};

/// An InMemoryTier over the memory-mapped pages of `file` (zero-copy; the tier keeps the mapping
/// alive). With `verify` every page's checksum is checked first (reads the whole table once).
inline InMemoryTier map_packed_table(const PackedTableFile& file, bool verify = true) {
  std::shared_ptr<const detail::FileMapping> mapping = file.map();
  const PackedLayout& l = file.layout();
  const std::span<const std::byte> pages = mapping->bytes().subspan(
      static_cast<size_t>(l.data_offset), static_cast<size_t>(l.num_pages * l.page_bytes));
  if (verify) {
    for (int64_t p = 0; p < l.num_pages; ++p) {
      const std::byte* data = pages.data() + p * l.page_bytes;
      const uint64_t computed = PackedTableFile::compute_page_checksum(data, l.page_bytes, p);
      if (computed != file.page_checksum(p)) throw Error(file.page_error(p, computed));
    }
  }
  return InMemoryTier::view_paged(pages, l.num_rows, l.row_bytes, l.rows_per_page, l.page_bytes,
                                  std::move(mapping), file.path() + " (mapped)");
}

/// Packs `tier`'s rows (any RowTier, e.g. an InMemoryTier over a safetensors tensor) into `path`,
/// fetching `batch_rows` rows at a time.
template <class Tier>
void pack_table(const std::string& path, const PackedTableInfo& info, Tier& tier,
                PackProgressFn progress = {}, int64_t batch_rows = 4096) {
  ENGRAM_CHECK(tier.num_rows() == info.num_rows && tier.row_bytes() == info.row_bytes(), path,
               ": source ", tier.describe(), " has ", tier.num_rows(), " rows of ",
               tier.row_bytes(), " bytes, the metadata says ", info.num_rows, " of ",
               info.row_bytes());
  PackedTableWriter writer(path, info, std::move(progress));
  std::vector<int64_t> ids(static_cast<size_t>(batch_rows));
  std::vector<std::byte> rows(static_cast<size_t>(batch_rows * info.row_bytes()));
  for (int64_t first = 0; first < info.num_rows; first += batch_rows) {
    const int64_t n = std::min(batch_rows, info.num_rows - first);
    for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = first + i;
    tier.fetch(std::span<const int64_t>(ids.data(), static_cast<size_t>(n)), rows);
    writer.append(
        std::span<const std::byte>(rows.data(), static_cast<size_t>(n * info.row_bytes())));
  }
  writer.finish();
}

}  // namespace engram
