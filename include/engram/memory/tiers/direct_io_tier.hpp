// engram/memory/tiers/direct_io_tier.hpp: the RowTier of a packed table file (packed_file.hpp)
// read with O_DIRECT at high queue depth, bypassing the page cache, so an 8-200 GB table costs no
// RAM beyond the staging buffers.
//
// One fetch, ids [n]:
//   keys   = sort([(ids[i] / rows_per_page) << 32 | i for i in 0..n))   // group by page
//   pages  = unique pages of keys                                          // each read once
//   reader.read_pages(page offsets):                                       // io_uring or pread
//     on page p: check XXH3(page, seed p) == the file's checksum table[p]  (unless disabled)
//                copy each requested row of p to out[i]
//   report: rows_from_storage = n, pages_read = |pages|, bytes_read = |pages| * page_bytes
//
// I/O mode: Mode::kAuto opens the file with O_DIRECT and probes one aligned read; if the
// filesystem refuses (EINVAL at open or read, e.g. some tmpfs/overlay setups) it falls back to
// buffered reads with POSIX_FADV_RANDOM. kDirect makes that refusal an error; kBuffered never
// tries. direct() and describe() say which mode is active. The reader is AutoPageReader by default
// (io_uring, else pread threads); any PageReader can be plugged in (tests inject faults that way).
//
// Guarantees: all or nothing (row_tier.hpp). An I/O error, a short read (file truncated after it
// was opened) or a checksum mismatch throws engram::Error naming the file, the page, its file
// offset and the cause; rows of a bad page are never returned. Steady-state fetches do not
// allocate (scratch vectors grow to the largest batch seen). Not thread-safe: one fetch at a time
// (drive it from one prefetch worker); the reader parallelises internally.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engram/error.hpp"
#include "engram/memory/detail/io.hpp"
#include "engram/memory/tiers/io_options.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/page_reader.hpp"
#include "engram/memory/tiers/row_tier.hpp"

namespace engram {

namespace detail {

/// Opens `path` read-only for page reads in `mode` (see DirectIOOptions): with O_DIRECT when
/// asked, probing one aligned read of `probe_bytes` at `probe_offset` because some filesystems
/// accept O_DIRECT at open and refuse it at read time; kAuto falls back to buffered reads with
/// POSIX_FADV_RANDOM on EINVAL. Sets `direct` and, after a fallback, `note`.
inline FileDescriptor open_for_page_reads(const std::string& path, DirectIOOptions::Mode mode,
                                          int64_t probe_offset, int64_t probe_bytes, bool& direct,
                                          std::string& note) {
  using Mode = DirectIOOptions::Mode;
  direct = false;
  if (mode != Mode::kBuffered) {
    FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
    int error = fd.valid() ? 0 : errno;
    if (fd.valid()) {
      IoBuffer probe(probe_bytes);
      error = pread_full(fd.get(), probe.data(), probe_bytes, probe_offset).error;
      if (error == 0) {
        direct = true;
        return fd;
      }
    }
    ENGRAM_CHECK(mode != Mode::kDirect && error == EINVAL, path,
                 ": cannot read with O_DIRECT: ", errno_text(error));
    note = "the filesystem refuses O_DIRECT";
  }
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ENGRAM_CHECK(fd.valid(), path, ": cannot open: ", errno_text(errno));
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_RANDOM);
  return fd;
}

}  // namespace detail

/// Rows of a packed table file on disk. @tparam Reader the PageReader (AutoPageReader by default).
template <PageReader Reader = AutoPageReader>
class DirectIOTierT {
 public:
  /// Opens and validates the packed table at `path` (see PackedTableFile).
  explicit DirectIOTierT(const std::string& path, DirectIOOptions options = {})
      : DirectIOTierT(PackedTableFile(path), options) {}

  explicit DirectIOTierT(PackedTableFile file, DirectIOOptions options = {})
      : file_(std::move(file)),
        options_(options),
        fd_(open_data(file_, options_.mode, direct_, mode_note_)),
        reader_(fd_.get(), file_.layout().page_bytes, options_.reader) {
    ENGRAM_CHECK(file_.num_pages() < (int64_t{1} << 32), file_.path(), ": ", file_.num_pages(),
                 " pages exceed the 2^32 pages a DirectIOTier addresses");
  }
  DirectIOTierT(const DirectIOTierT&) = delete;
  DirectIOTierT& operator=(const DirectIOTierT&) = delete;

  int64_t num_rows() const noexcept { return file_.num_rows(); }
  int64_t row_bytes() const noexcept { return file_.row_bytes(); }
  std::string describe() const {
    return "direct-io: " + file_.path() + " (" + (direct_ ? "O_DIRECT" : "buffered") +
           (mode_note_.empty() ? "" : ": " + mode_note_) + "; " + reader_.describe() +
           (options_.verify_checksums ? "; page checksums verified" : "") + ")";
  }
  /// Whether reads bypass the page cache.
  bool direct() const noexcept { return direct_; }
  const PackedTableFile& file() const noexcept { return file_; }
  Reader& reader() noexcept { return reader_; }

  /// Copies the rows `ids` to `out` (see the banner and row_tier.hpp).
  FetchReport fetch(std::span<const int64_t> ids, std::span<std::byte> out) {
    detail::check_fetch_args(file_.path(), ids, out, num_rows(), row_bytes());
    const size_t n = ids.size();
    ENGRAM_CHECK(n < (size_t{1} << 32), file_.path(), ": batch of ", n, " rows exceeds 2^32 rows");
    FetchReport report;
    report.rows = report.rows_from_storage = static_cast<int64_t>(n);
    if (n == 0) return report;

    const PackedLayout& layout = file_.layout();
    const int64_t rows_per_page = layout.rows_per_page;
    detail::group_rows_by_page(ids, rows_per_page, keys_, pages_, group_begin_);
    offsets_.clear();
    for (const int64_t page : pages_) offsets_.push_back(layout.page_offset(page));

    const auto row_bytes = static_cast<size_t>(layout.row_bytes);
    const bool verify = options_.verify_checksums;
    std::byte* const staging = out.data();
    BadPage bad;
    auto on_page = [&](size_t k, const std::byte* data) noexcept -> bool {
      const int64_t page = pages_[k];
      if (verify) {
        const uint64_t computed =
            PackedTableFile::compute_page_checksum(data, layout.page_bytes, page);
        if (computed != file_.page_checksum(page)) {
          bad.record(page, computed);
          return false;
        }
      }
      const int64_t first_row = page * rows_per_page;
      for (size_t j = group_begin_[k]; j < group_begin_[k + 1]; ++j) {
        const size_t i = keys_[j] & 0xFFFFFFFFu;
        std::memcpy(staging + i * row_bytes,
                    data + static_cast<size_t>(ids[i] - first_row) * row_bytes, row_bytes);
      }
      return true;
    };
    const PageReadStatus status = reader_.read_pages(std::span<const int64_t>(offsets_), on_page);
    if (bad.page >= 0) throw Error(file_.page_error(bad.page, bad.computed));
    if (status.failed_index >= 0) {
      const int64_t page = pages_[static_cast<size_t>(status.failed_index)];
      const std::string where =
          detail::concat(file_.path(), ": page ", page, " (file offset ", layout.page_offset(page),
                         ", ", layout.page_bytes, " bytes, ", direct_ ? "O_DIRECT" : "buffered",
                         ", ", reader_.describe(), ")");
      if (status.error != 0) detail::fail(where, ": I/O error: ", detail::errno_text(status.error));
      detail::fail(where, ": short read: got ", status.bytes, " of ", layout.page_bytes,
                   " bytes; the file was truncated or replaced after it was opened");
    }
    ENGRAM_CHECK(status.ok(), file_.path(), ": page reader stopped without a reason");
    report.pages_read = static_cast<int64_t>(pages_.size());
    report.bytes_read = report.pages_read * layout.page_bytes;
    return report;
  }

 private:
  // The lowest-numbered page that failed its checksum (on_page may run on several threads).
  struct BadPage {
    std::mutex mutex;
    int64_t page = -1;
    uint64_t computed = 0;
    void record(int64_t p, uint64_t c) noexcept {
      std::lock_guard lock(mutex);
      if (page < 0 || p < page) {
        page = p;
        computed = c;
      }
    }
  };

  static detail::FileDescriptor open_data(const PackedTableFile& file, DirectIOOptions::Mode mode,
                                          bool& direct, std::string& note) {
    return detail::open_for_page_reads(file.path(), mode, file.layout().page_offset(0),
                                       file.layout().page_bytes, direct, note);
  }

  PackedTableFile file_;
  DirectIOOptions options_;
  bool direct_ = false;
  std::string mode_note_;
  detail::FileDescriptor fd_;
  Reader reader_;
  // Per-fetch scratch, grown to the largest batch and reused.
  std::vector<uint64_t> keys_;
  std::vector<int64_t> pages_;
  std::vector<int64_t> offsets_;
  std::vector<size_t> group_begin_;
};

using DirectIOTier = DirectIOTierT<>;
static_assert(RowTier<DirectIOTier>);

}  // namespace engram
