// engram/memory/tiers/packed_file.hpp: opens and validates a packed table file
// (memory/packed_format.hpp) and serves it as a tier: PackedTableFile (metadata, layout, page
// checksums, verified reads) and map_packed_table (an InMemoryTier over the mapped pages).
//
// Guarantees:
// - Validation on open: magic, version, header size and checksum, JSON metadata, layout
//   arithmetic, exact file size (truncation and trailing bytes), footer and checksum-table
//   checksums. Every failure is an engram::Error naming the file and what was wrong.
// - Pages are not read on open (a 200 GB table opens in milliseconds); whoever reads them verifies
//   them (DirectIOTier per page read, map_packed_table / verify_pages for the whole file), and a
//   bad page is an Error naming the file and the page.
// Ownership: the file owns its descriptor; map() shares one read-only mapping (detail/
// mapped_file.hpp), which map_packed_table's tier keeps alive.
// Thread safety: immutable after construction (map() is internally synchronised).
//
//   engram::PackedTableFile file("layer15.engram");
//   engram::InMemoryTier tier = engram::map_packed_table(file);  // every page verified once
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engram/detail/mapped_file.hpp"
#include "engram/detail/posix_file.hpp"
#include "engram/error.hpp"
#include "engram/memory/detail/io.hpp"
#include "engram/memory/packed_format.hpp"
#include "engram/memory/tiers/in_memory_tier.hpp"

namespace engram {

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
  std::shared_ptr<const detail::MappedFile> map() const {
    std::lock_guard lock(mapping_state_->mutex);
    if (!mapping_state_->mapping)
      mapping_state_->mapping =
          std::make_shared<const detail::MappedFile>(fd_.get(), layout_.file_bytes, path_);
    return mapping_state_->mapping;
  }

 private:
  struct MappingState {
    std::mutex mutex;
    std::shared_ptr<const detail::MappedFile> mapping;
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
  std::shared_ptr<const detail::MappedFile> mapping = file.map();
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

}  // namespace engram
