// engram/memory/tiers/remote_tier.hpp: the RowTier of a packed table whose pages live in a remote
// key-value pool (memcached by default, memcached_store.hpp), and `push_table`, which loads a
// packed table into such a pool. Page format and store seam: docs/design/memory.md.
//
//   key(page p) = "engram:" + 16 hex digits of the table id (footer checksum) + ":" + p
//   value       = the bytes of packed page p, exactly as in the file; accepted only when
//                 page_bytes long and XXH3-64(value, seed p) equals the file's checksum entry
//
// fetch_partial(ids [n], out): one batched get of the distinct pages; rows of verified pages are
// copied to their positions; missing() lists the positions whose page was absent, unreachable or
// corrupt (left untouched in out). fetch(ids, out) is the all-or-nothing form (throws naming the
// first missing page). FallbackTierT composes fetch_partial with a durable tier.
// A Store (PageStore concept): get_many(keys, lengths, on_value) never throws for a dead server;
// put(key, bytes) -> kOk | kFull | kError; describe().
//
// Thread safety: one thread at a time per tier (clone() makes another with its own connections);
// stats() from any thread. Steady-state fetches do not allocate.
// Not guaranteed: that any page is in the pool; rows are never wrong, only missing.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engram/error.hpp"
#include "engram/memory/detail/io.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/row_tier.hpp"

namespace engram {

/// What one batched get did at the transport level (values not found are not errors).
struct StoreGetStatus {
  int64_t errors = 0;       ///< servers that failed or timed out during this get
  std::string first_error;  ///< one line naming the server and the cause (empty when none)
};

/// The outcome of storing one value.
struct StorePutStatus {
  enum class Code { kOk, kFull, kError };
  Code code = Code::kOk;
  std::string server;   ///< the server the key maps to ("host:port")
  std::string message;  ///< the store's message when not kOk
  bool ok() const noexcept { return code == Code::kOk; }
};

namespace detail {
/// The callable type the PageStore concept checks get_many with.
struct StoreValueSink {
  void operator()(std::string_view, std::span<const std::byte>) const noexcept {}
};
}  // namespace detail

/// A batched key-value client holding remote pages (see the banner).
template <class S>
concept PageStore = requires(S& store, const S& const_store, std::span<const char* const> keys,
                             std::span<const size_t> lengths, std::string_view key,
                             std::span<const std::byte> value, detail::StoreValueSink sink) {
  { const_store.describe() } -> std::convertible_to<std::string>;
  { store.get_many(keys, lengths, sink) } -> std::same_as<StoreGetStatus>;
  { store.put(key, value) } -> std::same_as<StorePutStatus>;
};

/// Settings of a RemoteTier.
struct RemoteTierOptions {
  /// Largest value the store accepts (memcached's default item limit is 1 MiB including the key
  /// and item header); a table whose pages are larger is refused at construction.
  int64_t max_value_bytes = (int64_t{1} << 20) - 1024;
};

/// Cumulative counters of a RemoteTier (a snapshot).
struct RemoteStats {
  int64_t batches = 0;
  int64_t pages_requested = 0;  ///< distinct pages asked of the store
  int64_t pages_hit = 0;        ///< pages returned and verified
  int64_t pages_missing = 0;    ///< not returned (not found, dead or slow server)
  int64_t pages_corrupt = 0;    ///< returned but failed verification (size or checksum)
  int64_t store_errors = 0;     ///< server failures reported by the store, summed over batches
};

/// The table id of a packed file (see the banner): its footer checksum.
inline uint64_t packed_table_id(const PackedTableFile& file) {
  detail::FileDescriptor fd(::open(file.path().c_str(), O_RDONLY | O_CLOEXEC));
  ENGRAM_CHECK(fd.valid(), file.path(), ": cannot open: ", detail::errno_text(errno));
  std::byte checksum[8];
  detail::pread_exact(fd.get(), checksum, 8, file.layout().footer_offset + 56, file.path(),
                      "the footer checksum");
  return detail::load_le64(checksum);
}

/// "engram:<16 hex digits>:" for table `id`.
inline std::string remote_key_prefix(uint64_t table_id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string prefix = "engram:";
  for (int shift = 60; shift >= 0; shift -= 4) prefix += kHex[(table_id >> shift) & 15];
  return prefix + ":";
}

/// Rows of a packed table served from pages in a remote pool. @tparam Store a PageStore.
template <PageStore Store>
class RemoteTierT {
 public:
  /// @param file   the opened packed table (layout, checksums; shared by clones)
  /// @param store  the client (owns its connections)
  RemoteTierT(std::shared_ptr<const PackedTableFile> file, Store store,
              RemoteTierOptions options = {})
      : file_(std::move(file)), store_(std::move(store)), options_(options) {
    ENGRAM_CHECK(file_ != nullptr, "remote tier: no packed table");
    const PackedLayout& l = file_->layout();
    ENGRAM_CHECK(l.page_bytes <= options_.max_value_bytes, file_->path(), ": pages of ",
                 l.page_bytes, " bytes exceed the remote store's value limit of ",
                 options_.max_value_bytes, " bytes (raise memcached's -I and max_value_bytes)");
    table_id_ = packed_table_id(*file_);
    prefix_ = remote_key_prefix(table_id_);
  }
  /// Opens the packed table at `path` for its metadata (pages are read from the pool).
  RemoteTierT(const std::string& path, Store store, RemoteTierOptions options = {})
      : RemoteTierT(std::make_shared<const PackedTableFile>(path), std::move(store), options) {}

  RemoteTierT(RemoteTierT&&) = delete;  // stats hold atomics; construct in place
  RemoteTierT(const RemoteTierT&) = delete;

  /// A tier on the same table with `store` (e.g. a fresh connection set for another thread).
  std::unique_ptr<RemoteTierT> clone(Store store) const {
    return std::make_unique<RemoteTierT>(file_, std::move(store), options_);
  }

  int64_t num_rows() const noexcept { return file_->num_rows(); }
  int64_t row_bytes() const noexcept { return file_->row_bytes(); }
  std::string describe() const {
    return "remote: " + store_.describe() + " (table " + prefix_.substr(7, 16) + ", " +
           std::to_string(file_->num_pages()) + " pages of " +
           std::to_string(file_->layout().page_bytes) + " bytes; metadata and checksums from " +
           file_->path() + ")";
  }
  uint64_t table_id() const noexcept { return table_id_; }
  const PackedTableFile& file() const noexcept { return *file_; }
  std::shared_ptr<const PackedTableFile> shared_file() const noexcept { return file_; }
  Store& store() noexcept { return store_; }
  /// The key of page p.
  std::string page_key(int64_t page) const { return prefix_ + std::to_string(page); }

  RemoteStats stats() const noexcept {
    RemoteStats s;
    s.batches = batches_.load(std::memory_order_relaxed);
    s.pages_requested = pages_requested_.load(std::memory_order_relaxed);
    s.pages_hit = pages_hit_.load(std::memory_order_relaxed);
    s.pages_missing = pages_missing_.load(std::memory_order_relaxed);
    s.pages_corrupt = pages_corrupt_.load(std::memory_order_relaxed);
    s.store_errors = store_errors_.load(std::memory_order_relaxed);
    return s;
  }
  /// The store's first error of the last batch that had one (not synchronised with fetches).
  const std::string& last_store_error() const noexcept { return last_error_; }

  /// Writes the rows whose pages the pool returned intact; missing() lists the other positions.
  FetchReport fetch_partial(std::span<const int64_t> ids, std::span<std::byte> out) {
    detail::check_fetch_args(file_->path() + " (remote)", ids, out, num_rows(), row_bytes());
    const size_t n = ids.size();
    ENGRAM_CHECK(n < (size_t{1} << 32), file_->path(), ": batch of ", n, " rows exceeds 2^32");
    missing_.clear();
    FetchReport report;
    report.rows = static_cast<int64_t>(n);
    if (n == 0) return report;

    const PackedLayout& layout = file_->layout();
    const int64_t rows_per_page = layout.rows_per_page;
    detail::group_rows_by_page(ids, rows_per_page, keys_, pages_, group_begin_);
    build_keys();
    page_state_.assign(pages_.size(), kPending);

    const auto rb = static_cast<size_t>(layout.row_bytes);
    int64_t pages_ok = 0;
    auto on_value = [&](std::string_view key, std::span<const std::byte> value) noexcept {
      const int64_t k = page_index(key);
      if (k < 0 || page_state_[static_cast<size_t>(k)] != kPending) return;
      const int64_t page = pages_[static_cast<size_t>(k)];
      if (static_cast<int64_t>(value.size()) != layout.page_bytes ||
          !file_->page_ok(page, value.data())) {
        page_state_[static_cast<size_t>(k)] = kCorrupt;
        return;
      }
      page_state_[static_cast<size_t>(k)] = kOk;
      ++pages_ok;
      const int64_t first_row = page * rows_per_page;
      for (size_t j = group_begin_[static_cast<size_t>(k)];
           j < group_begin_[static_cast<size_t>(k) + 1]; ++j) {
        const size_t i = keys_[j] & 0xFFFFFFFFu;
        std::memcpy(out.data() + i * rb,
                    value.data() + static_cast<size_t>(ids[i] - first_row) * rb, rb);
      }
    };
    StoreGetStatus status = store_.get_many(std::span<const char* const>(key_ptrs_),
                                            std::span<const size_t>(key_lengths_), on_value);

    int64_t corrupt = 0;
    for (size_t k = 0; k < pages_.size(); ++k) {
      if (page_state_[k] == kOk) continue;
      if (page_state_[k] == kCorrupt) ++corrupt;
      for (size_t j = group_begin_[k]; j < group_begin_[k + 1]; ++j)
        missing_.push_back(static_cast<int64_t>(keys_[j] & 0xFFFFFFFFu));
    }
    std::sort(missing_.begin(), missing_.end());
    if (status.errors > 0) last_error_ = std::move(status.first_error);
    last_batch_errors_ = status.errors;

    batches_.fetch_add(1, std::memory_order_relaxed);
    pages_requested_.fetch_add(static_cast<int64_t>(pages_.size()), std::memory_order_relaxed);
    pages_hit_.fetch_add(pages_ok, std::memory_order_relaxed);
    pages_corrupt_.fetch_add(corrupt, std::memory_order_relaxed);
    pages_missing_.fetch_add(static_cast<int64_t>(pages_.size()) - pages_ok - corrupt,
                             std::memory_order_relaxed);
    store_errors_.fetch_add(status.errors, std::memory_order_relaxed);

    report.rows_from_storage = report.rows_from_remote =
        static_cast<int64_t>(n) - static_cast<int64_t>(missing_.size());
    report.pages_read = pages_ok;
    report.bytes_read = pages_ok * layout.page_bytes;
    return report;
  }

  /// Batch positions (ascending) that the last fetch_partial could not serve.
  std::span<const int64_t> missing() const noexcept { return missing_; }

  /// All or nothing (row_tier.hpp): throws naming the first missing page when any is missing.
  FetchReport fetch(std::span<const int64_t> ids, std::span<std::byte> out) {
    const FetchReport report = fetch_partial(ids, out);
    if (!missing_.empty()) {
      const int64_t page =
          ids[static_cast<size_t>(missing_.front())] / file_->layout().rows_per_page;
      const auto k = static_cast<size_t>(std::lower_bound(pages_.begin(), pages_.end(), page) -
                                         pages_.begin());
      const bool corrupt = page_state_[k] == kCorrupt;
      detail::fail(file_->path(), " (remote ", store_.describe(), "): ", missing_.size(), " of ",
                   ids.size(), " rows unavailable; first: page ", page, " (key ", page_key(page),
                   ") ",
                   corrupt ? "failed verification (wrong size or checksum)" : "is not in the pool",
                   last_batch_errors_ > 0 ? "; store error: " + last_error_ : std::string());
    }
    return report;
  }

 private:
  static constexpr uint8_t kPending = 0, kOk = 1, kCorrupt = 2;

  void build_keys() {
    const size_t max_key = prefix_.size() + 20;
    if (key_chars_.size() < pages_.size() * max_key) key_chars_.resize(pages_.size() * max_key);
    key_ptrs_.resize(pages_.size());
    key_lengths_.resize(pages_.size());
    for (size_t k = 0; k < pages_.size(); ++k) {
      char* begin = key_chars_.data() + k * max_key;
      std::memcpy(begin, prefix_.data(), prefix_.size());
      char* end = std::to_chars(begin + prefix_.size(), begin + max_key, pages_[k]).ptr;
      key_ptrs_[k] = begin;
      key_lengths_[k] = static_cast<size_t>(end - begin);
    }
  }

  // The index in pages_ of the page a returned key names, or -1 for a key not asked for.
  int64_t page_index(std::string_view key) const noexcept {
    if (key.size() <= prefix_.size() || key.substr(0, prefix_.size()) != prefix_) return -1;
    int64_t page = -1;
    const char* begin = key.data() + prefix_.size();
    const auto [ptr, ec] = std::from_chars(begin, key.data() + key.size(), page);
    if (ec != std::errc() || ptr != key.data() + key.size()) return -1;
    const auto it = std::lower_bound(pages_.begin(), pages_.end(), page);
    return it != pages_.end() && *it == page ? it - pages_.begin() : -1;
  }

  std::shared_ptr<const PackedTableFile> file_;
  Store store_;
  RemoteTierOptions options_;
  uint64_t table_id_ = 0;
  std::string prefix_;
  // Per-fetch scratch, grown to the largest batch and reused.
  std::vector<uint64_t> keys_;
  std::vector<int64_t> pages_;
  std::vector<size_t> group_begin_;
  std::vector<uint8_t> page_state_;
  std::vector<char> key_chars_;
  std::vector<const char*> key_ptrs_;
  std::vector<size_t> key_lengths_;
  std::vector<int64_t> missing_;
  std::string last_error_;
  int64_t last_batch_errors_ = 0;
  std::atomic<int64_t> batches_{0}, pages_requested_{0}, pages_hit_{0}, pages_missing_{0},
      pages_corrupt_{0}, store_errors_{0};
};

/// Progress of a push, reported to push_table's callback.
struct PushProgress {
  int64_t pages_done = 0;
  int64_t pages_total = 0;
  int64_t bytes_done = 0;
  double seconds = 0;
  double megabytes_per_second = 0;  ///< 1 MB = 10^6 bytes
  double seconds_left = 0;
};

/// What a push did.
struct PushReport {
  int64_t pages = 0;
  int64_t bytes = 0;
  int64_t pages_verified = 0;  ///< read back and compared byte for byte
  double seconds = 0;
};

/// Settings of push_table.
struct PushOptions {
  int64_t chunk_pages = 256;  ///< pages read, stored and read back per step
  double progress_interval_s = 0.5;
};

/// Stores every page of `file` in `store` under the RemoteTier keys, verifying each page against
/// the file's checksum before storing it and reading every chunk back to compare it byte for byte.
/// Throws engram::Error naming the server and the page on a full server (memcached -M: out of
/// memory), a store error, or a page that does not read back identical.
template <PageStore Store>
PushReport push_table(const PackedTableFile& file, Store& store, const PushOptions& options = {},
                      const std::function<void(const PushProgress&)>& progress = {}) {
  const PackedLayout& layout = file.layout();
  const std::string prefix = remote_key_prefix(packed_table_id(file));
  detail::FileDescriptor fd(::open(file.path().c_str(), O_RDONLY | O_CLOEXEC));
  ENGRAM_CHECK(fd.valid(), file.path(), ": cannot open: ", detail::errno_text(errno));
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  const int64_t chunk_pages = std::max<int64_t>(1, options.chunk_pages);
  std::vector<std::byte> chunk(static_cast<size_t>(chunk_pages * layout.page_bytes));
  std::vector<std::string> keys;
  std::vector<const char*> key_ptrs;
  std::vector<size_t> key_lengths;
  std::vector<uint8_t> verified;
  const auto start = std::chrono::steady_clock::now();
  auto last_progress = start;
  PushReport report;
  auto report_progress = [&](bool force) {
    const auto now = std::chrono::steady_clock::now();
    if (!progress || (!force && std::chrono::duration<double>(now - last_progress).count() <
                                    options.progress_interval_s))
      return;
    last_progress = now;
    PushProgress p;
    p.pages_done = report.pages;
    p.pages_total = layout.num_pages;
    p.bytes_done = report.bytes;
    p.seconds = std::chrono::duration<double>(now - start).count();
    p.megabytes_per_second =
        p.seconds > 0 ? static_cast<double>(p.bytes_done) / 1e6 / p.seconds : 0;
    p.seconds_left = p.pages_done > 0
                         ? p.seconds * static_cast<double>(p.pages_total - p.pages_done) /
                               static_cast<double>(p.pages_done)
                         : 0;
    progress(p);
  };

  for (int64_t first = 0; first < layout.num_pages; first += chunk_pages) {
    const int64_t count = std::min(chunk_pages, layout.num_pages - first);
    detail::pread_exact(fd.get(), chunk.data(), count * layout.page_bytes,
                        layout.page_offset(first), file.path(), "pages");
    keys.clear();
    for (int64_t p = 0; p < count; ++p) {
      const int64_t page = first + p;
      const std::byte* data = chunk.data() + p * layout.page_bytes;
      const uint64_t computed =
          PackedTableFile::compute_page_checksum(data, layout.page_bytes, page);
      if (computed != file.page_checksum(page)) throw Error(file.page_error(page, computed));
      keys.push_back(prefix + std::to_string(page));
      const StorePutStatus put = store.put(
          keys.back(), std::span<const std::byte>(data, static_cast<size_t>(layout.page_bytes)));
      if (put.code == StorePutStatus::Code::kFull)
        detail::fail(file.path(), ": server ", put.server, " of ", store.describe(),
                     " is full (out of memory with eviction off) after ", report.pages + p, " of ",
                     layout.num_pages, " pages (", (report.pages + p) * layout.page_bytes,
                     " bytes) were stored, at page ", page, ": ", put.message,
                     "; give the pool more memory (memcached -m) or more servers");
      if (!put.ok())
        detail::fail(file.path(), ": storing page ", page, " (key ", keys.back(), ") on server ",
                     put.server, " failed: ", put.message);
    }
    // Read the chunk back and compare byte for byte.
    key_ptrs.clear();
    key_lengths.clear();
    for (const std::string& k : keys) {
      key_ptrs.push_back(k.data());
      key_lengths.push_back(k.size());
    }
    verified.assign(static_cast<size_t>(count), 0);
    const StoreGetStatus status = store.get_many(
        std::span<const char* const>(key_ptrs), std::span<const size_t>(key_lengths),
        [&](std::string_view key, std::span<const std::byte> value) noexcept {
          int64_t page = -1;
          if (key.size() <= prefix.size()) return;
          const auto [ptr, ec] =
              std::from_chars(key.data() + prefix.size(), key.data() + key.size(), page);
          if (ec != std::errc() || page < first || page >= first + count) return;
          const std::byte* expected = chunk.data() + (page - first) * layout.page_bytes;
          if (static_cast<int64_t>(value.size()) == layout.page_bytes &&
              std::memcmp(value.data(), expected, value.size()) == 0)
            verified[static_cast<size_t>(page - first)] = 1;
        });
    for (int64_t p = 0; p < count; ++p)
      ENGRAM_CHECK(verified[static_cast<size_t>(p)], file.path(), ": page ", first + p, " (key ",
                   keys[static_cast<size_t>(p)], ") did not read back identical from ",
                   store.describe(), " right after it was stored",
                   status.errors > 0 ? "; store error: " + status.first_error : std::string());
    report.pages += count;
    report.pages_verified += count;
    report.bytes += count * layout.page_bytes;
    report_progress(false);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report_progress(true);
  return report;
}

}  // namespace engram
