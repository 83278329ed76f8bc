// engram/memory/packed_writer.hpp: writes a packed table file (packed_format.hpp): the streaming
// PackedTableWriter and pack_table, which packs any RowTier's rows.
//
// Guarantees:
// - Streaming: the writer holds one chunk of pages (8 MiB by default) and the checksum table
//   (8 bytes per 4 KiB page), never the table.
// - Atomic: it writes a unique "<path>.tmp.XXXXXX", fsyncs it, renames it to <path> and fsyncs the
//   directory (detail::AtomicFile): an interrupted pack never leaves a file at <path> that loads,
//   an existing <path> is replaced only on success, concurrent packs of one path do not mix.
// - Rows are appended in row order as whole records (data bytes then scale bytes) or as split
//   data / scale arrays (the safetensors layout); counts are checked, errors name the path.
// Thread safety: a writer is single-threaded.
//
//   engram::PackedTableWriter writer("layer15.engram", info, progress_callback);
//   for (...) writer.append(record_bytes);    // whole row records, in row order
//   writer.finish();                          // fsync + rename: only now does the file exist
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engram/detail/posix_file.hpp"
#include "engram/error.hpp"
#include "engram/memory/detail/io.hpp"
#include "engram/memory/packed_format.hpp"

namespace engram {

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
