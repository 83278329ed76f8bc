// engram/memory/tiers/in_memory_tier.hpp: the RowTier of a table held in RAM: an owned vector of
// row records (from_split interleaves an FP8 table's separate data and scale tensors), a
// non-owning view of dense rows (e.g. a memory-mapped F32/BF16 safetensors tensor), or the pages
// of a memory-mapped packed table (packed_file.hpp: map_packed_table).
//
// Layout: row g is at
//   base + (g / rows_per_page) * page_bytes + (g % rows_per_page) * row_bytes
// Dense tables are the special case rows_per_page = 1, page_bytes = row_bytes (row g at g *
// row_bytes). Records are row_bytes bytes (data bytes, then scale bytes; see row_tier.hpp).
//
// Guarantees: fetch checks every id and the staging size before copying anything; it is
// allocation-free and safe to call concurrently from many threads (the table is immutable).
// Ownership: an owning tier keeps its vector; a view borrows the bytes, which must outlive it; a
// mapped packed table is kept alive by the tier itself (shared keep-alive handle).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engram/error.hpp"
#include "engram/memory/tiers/row_tier.hpp"

namespace engram {

/// Rows in RAM; the reference tier every other tier is tested against.
class InMemoryTier {
 public:
  /// Takes ownership of `rows`: num_rows = rows.size() / row_bytes dense records.
  InMemoryTier(std::vector<std::byte> rows, int64_t row_bytes, std::string name = "in-memory")
      : owned_(std::move(rows)), name_(std::move(name)) {
    ENGRAM_CHECK(row_bytes > 0, name_, ": row_bytes must be positive, found ", row_bytes);
    ENGRAM_CHECK(static_cast<int64_t>(owned_.size()) % row_bytes == 0, name_, ": ", owned_.size(),
                 " bytes are not a whole number of ", row_bytes, "-byte rows");
    init(owned_.data(), static_cast<int64_t>(owned_.size()) / row_bytes, row_bytes, 1, row_bytes);
  }

  /// Owned records built from separate data [n, data_bytes] and scale [n, scale_bytes] arrays
  /// (the safetensors layout of FP8 tables: embed.weight + embed.weight_scale_inv).
  static InMemoryTier from_split(std::span<const std::byte> data, std::span<const std::byte> scales,
                                 int64_t data_bytes, int64_t scale_bytes,
                                 std::string name = "in-memory") {
    ENGRAM_CHECK(data_bytes > 0 && scale_bytes >= 0, name, ": invalid row split (", data_bytes,
                 " data bytes, ", scale_bytes, " scale bytes)");
    ENGRAM_CHECK(static_cast<int64_t>(data.size()) % data_bytes == 0, name, ": ", data.size(),
                 " data bytes are not a whole number of ", data_bytes, "-byte rows");
    const int64_t n = static_cast<int64_t>(data.size()) / data_bytes;
    ENGRAM_CHECK(static_cast<int64_t>(scales.size()) == n * scale_bytes, name, ": ", n,
                 " rows need ", n * scale_bytes, " scale bytes, found ", scales.size());
    const int64_t row_bytes = data_bytes + scale_bytes;
    std::vector<std::byte> records(static_cast<size_t>(n * row_bytes));
    for (int64_t g = 0; g < n; ++g) {
      std::memcpy(records.data() + g * row_bytes, data.data() + g * data_bytes,
                  static_cast<size_t>(data_bytes));
      if (scale_bytes > 0)
        std::memcpy(records.data() + g * row_bytes + data_bytes, scales.data() + g * scale_bytes,
                    static_cast<size_t>(scale_bytes));
    }
    return InMemoryTier(std::move(records), row_bytes, std::move(name));
  }

  /// A view of dense rows owned elsewhere (they must outlive the tier).
  static InMemoryTier view(std::span<const std::byte> rows, int64_t row_bytes,
                           std::string name = "in-memory view") {
    ENGRAM_CHECK(row_bytes > 0, name, ": row_bytes must be positive, found ", row_bytes);
    ENGRAM_CHECK(static_cast<int64_t>(rows.size()) % row_bytes == 0, name, ": ", rows.size(),
                 " bytes are not a whole number of ", row_bytes, "-byte rows");
    return InMemoryTier(rows.data(), static_cast<int64_t>(rows.size()) / row_bytes, row_bytes, 1,
                        row_bytes, nullptr, std::move(name));
  }

  /// A view of paged rows (rows_per_page rows at the start of each page_bytes page, as in a
  /// packed table). `keep_alive` (may be null) is held for the tier's lifetime, e.g. a mapping.
  static InMemoryTier view_paged(std::span<const std::byte> pages, int64_t num_rows,
                                 int64_t row_bytes, int64_t rows_per_page, int64_t page_bytes,
                                 std::shared_ptr<const void> keep_alive, std::string name) {
    ENGRAM_CHECK(row_bytes > 0 && rows_per_page > 0 && rows_per_page * row_bytes <= page_bytes,
                 name, ": invalid page layout (row_bytes ", row_bytes, ", rows_per_page ",
                 rows_per_page, ", page_bytes ", page_bytes, ")");
    ENGRAM_CHECK(num_rows >= 0, name, ": negative row count ", num_rows);
    const int64_t pages_needed = (num_rows + rows_per_page - 1) / rows_per_page;
    ENGRAM_CHECK(static_cast<int64_t>(pages.size()) >= pages_needed * page_bytes, name, ": ",
                 pages.size(), " bytes cannot hold ", pages_needed, " pages of ", page_bytes,
                 " bytes");
    return InMemoryTier(pages.data(), num_rows, row_bytes, rows_per_page, page_bytes,
                        std::move(keep_alive), std::move(name));
  }

  InMemoryTier(InMemoryTier&& other) noexcept { *this = std::move(other); }
  InMemoryTier& operator=(InMemoryTier&& other) noexcept {
    if (this != &other) {
      // A moved vector keeps its buffer, so base_ stays valid for owning tiers too.
      owned_ = std::move(other.owned_);
      keep_alive_ = std::move(other.keep_alive_);
      name_ = std::move(other.name_);
      base_ = std::exchange(other.base_, nullptr);
      num_rows_ = std::exchange(other.num_rows_, 0);
      row_bytes_ = other.row_bytes_;
      rows_per_page_ = other.rows_per_page_;
      page_bytes_ = other.page_bytes_;
    }
    return *this;
  }
  InMemoryTier(const InMemoryTier&) = delete;
  InMemoryTier& operator=(const InMemoryTier&) = delete;

  int64_t num_rows() const noexcept { return num_rows_; }
  int64_t row_bytes() const noexcept { return row_bytes_; }
  std::string describe() const { return "in-memory: " + name_; }

  /// The record of row g (0 <= g < num_rows(), unchecked).
  const std::byte* row(int64_t g) const noexcept {
    return base_ + (g / rows_per_page_) * page_bytes_ + (g % rows_per_page_) * row_bytes_;
  }

  /// Copies the rows `ids` to `out` (see row_tier.hpp). Thread-safe.
  FetchReport fetch(std::span<const int64_t> ids, std::span<std::byte> out) const {
    detail::check_fetch_args(name_, ids, out, num_rows_, row_bytes_);
    fetch_unchecked(ids, out.data());
    FetchReport report;
    report.rows = report.rows_from_memory = static_cast<int64_t>(ids.size());
    report.bytes_read = report.rows * row_bytes_;
    return report;
  }

  /// The copy loop without checks: ids in range, out holds ids.size() rows.
  void fetch_unchecked(std::span<const int64_t> ids, std::byte* out) const noexcept {
    const auto rb = static_cast<size_t>(row_bytes_);
    for (size_t i = 0; i < ids.size(); ++i) std::memcpy(out + i * rb, row(ids[i]), rb);
  }

 private:
  InMemoryTier(const std::byte* base, int64_t num_rows, int64_t row_bytes, int64_t rows_per_page,
               int64_t page_bytes, std::shared_ptr<const void> keep_alive, std::string name)
      : keep_alive_(std::move(keep_alive)), name_(std::move(name)) {
    init(base, num_rows, row_bytes, rows_per_page, page_bytes);
  }
  void init(const std::byte* base, int64_t num_rows, int64_t row_bytes, int64_t rows_per_page,
            int64_t page_bytes) noexcept {
    base_ = base;
    num_rows_ = num_rows;
    row_bytes_ = row_bytes;
    rows_per_page_ = rows_per_page;
    page_bytes_ = page_bytes;
  }

  std::vector<std::byte> owned_;
  std::shared_ptr<const void> keep_alive_;
  std::string name_;
  const std::byte* base_ = nullptr;
  int64_t num_rows_ = 0;
  int64_t row_bytes_ = 1;
  int64_t rows_per_page_ = 1;
  int64_t page_bytes_ = 1;
};

static_assert(RowTier<InMemoryTier>);

}  // namespace engram
