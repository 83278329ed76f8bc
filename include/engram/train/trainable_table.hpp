// engram/train/trainable_table.hpp: an embedding table being trained, f32 rows in RAM or a file.
//
// TrainableTable holds weights F32 [rows, row_dim] (row-major). RowStorage<T> is the storage of the
// table and of the optimisers' state beside it, placed by a Placement:
// - RAM (default): an anonymous private mapping, pages zero and committed when first written. A
//   table of 10^8 rows whose training touches a few thousand rows costs memory for those rows'
//   pages only (optimiser state the same way).
// - a file ("<path>.weight", "<path>.exp_avg", ...): a shared mapping; a new file starts as zeros
//   (sparse), an existing one is used as it is. The kernel writes back only the dirty pages (the
//   rows steps touched), so tables and state larger than RAM train through the page cache;
//   flush() makes them durable. Raw f32, [rows, row_dim]; checkpoints remain the portable form.
// Guarantees: row(r) is checked against rows(); storage is owned and never reallocated (spans stay
// valid for the object's lifetime); moving transfers it. Not copyable (tables are large).
// Thread safety: plain owner; concurrent writes to distinct rows are safe (the optimisers do so).
//
//   engram::train::TrainableTable table(1 << 20, 32);          // zero rows, committed lazily
//   table.assign(std::span<const float>(initial));              // or copy rows in
//   optimizer.step(table, grad);                                // train/optimizers.hpp
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "engram/detail/posix_file.hpp"
#include "engram/error.hpp"

namespace engram::train {

/// Storage of `size` values for a table or optimiser state (see the banner): in RAM (an anonymous
/// mapping, zero pages committed on first write) or in a file (a shared mapping of `path`: a new
/// file starts as zeros, sparse; an existing one of exactly size x sizeof(T) bytes is used as it
/// is, so its values carry over). In a file, the kernel writes back only the pages that were
/// written (the rows a step touched); flush() forces them to the disk.
template <class T>
class RowStorage {
 public:
  RowStorage() = default;
  explicit RowStorage(int64_t size) : size_(size) {
    ENGRAM_CHECK(size >= 0, "RowStorage: negative size ", size);
    if (size > 0) map(-1, "(anonymous)");
  }
  RowStorage(int64_t size, const std::string& path) : size_(size) {
    ENGRAM_CHECK(size >= 0, path, ": negative size ", size);
    engram::detail::FileDescriptor fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    ENGRAM_CHECK(fd.valid(), path,
                 ": cannot open for training state: ", engram::detail::errno_text(errno));
    struct stat st {};
    ENGRAM_CHECK(::fstat(fd.get(), &st) == 0, path,
                 ": fstat failed: ", engram::detail::errno_text(errno));
    const auto bytes = static_cast<off_t>(static_cast<size_t>(size) * sizeof(T));
    if (st.st_size == 0) {
      ENGRAM_CHECK(::ftruncate(fd.get(), bytes) == 0, path, ": cannot size to ", bytes,
                   " bytes: ", engram::detail::errno_text(errno));
    } else {
      ENGRAM_CHECK(st.st_size == bytes, path, ": holds ", st.st_size, " bytes, expected ", bytes,
                   " (", size, " values of ", sizeof(T), " bytes)");
    }
    if (size > 0) map(fd.get(), path);  // the mapping keeps the file; the descriptor may close
    path_ = path;
  }
  RowStorage(RowStorage&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        path_(std::move(other.path_)) {}
  RowStorage& operator=(RowStorage&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
      path_ = std::move(other.path_);
    }
    return *this;
  }
  RowStorage(const RowStorage&) = delete;
  RowStorage& operator=(const RowStorage&) = delete;
  ~RowStorage() { release(); }

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  int64_t size() const noexcept { return size_; }
  std::span<T> span() noexcept { return {data_, static_cast<size_t>(size_)}; }
  std::span<const T> span() const noexcept { return {data_, static_cast<size_t>(size_)}; }
  /// The backing file, empty in RAM.
  const std::string& path() const noexcept { return path_; }

  /// Writes the written pages back to the file and waits for the disk (no-op in RAM).
  void flush() {
    if (path_.empty() || data_ == nullptr) return;
    ENGRAM_CHECK(::msync(data_, static_cast<size_t>(size_) * sizeof(T), MS_SYNC) == 0, path_,
                 ": msync failed: ", engram::detail::errno_text(errno));
  }

 private:
  void map(int fd, const std::string& what) {
    const size_t bytes = static_cast<size_t>(size_) * sizeof(T);
    const int flags = fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE : MAP_SHARED;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, fd, 0);
    ENGRAM_CHECK(p != MAP_FAILED, what, ": mmap of ", bytes,
                 " bytes failed: ", engram::detail::errno_text(errno));
    data_ = static_cast<T*>(p);
  }
  void release() noexcept {
    if (data_) ::munmap(data_, static_cast<size_t>(size_) * sizeof(T));
    data_ = nullptr;
  }
  T* data_ = nullptr;
  int64_t size_ = 0;
  std::string path_;
};

/// Where a table or an optimiser keeps its values: RAM (empty path) or files named
/// "<path><suffix>" (suffix ".weight", ".exp_avg", ...), see RowStorage.
struct Placement {
  std::string path = {};
  template <class T>
  RowStorage<T> make(int64_t size, std::string_view suffix) const {
    return path.empty() ? RowStorage<T>(size) : RowStorage<T>(size, path + std::string(suffix));
  }
};

/// f32 table rows [rows, row_dim] being trained (see the banner).
class TrainableTable {
 public:
  TrainableTable() = default;
  /// Zero rows, committed on first write; with a file placement, the rows of "<path>.weight"
  /// (zeros when new, its values when it exists with the right size).
  TrainableTable(int64_t rows, int64_t row_dim, const Placement& placement = {})
      : rows_(rows),
        row_dim_(row_dim),
        weights_(placement.make<float>(checked_numel(rows, row_dim), ".weight")) {}
  /// A copy of `values` [rows, row_dim].
  TrainableTable(std::span<const float> values, int64_t rows, int64_t row_dim)
      : TrainableTable(rows, row_dim) {
    assign(values);
  }

  /// Copies `values` [rows(), row_dim()] into the table.
  void assign(std::span<const float> values) {
    ENGRAM_CHECK(static_cast<int64_t>(values.size()) == weights_.size(),
                 "TrainableTable::assign: expected ", weights_.size(), " values ([", rows_, ", ",
                 row_dim_, "]), found ", values.size());
    std::copy(values.begin(), values.end(), weights_.data());
  }

  int64_t rows() const noexcept { return rows_; }
  int64_t row_dim() const noexcept { return row_dim_; }
  /// All weights, [rows, row_dim] row-major.
  std::span<float> weights() noexcept { return weights_.span(); }
  std::span<const float> weights() const noexcept { return weights_.span(); }
  /// Writes the touched pages back to the file (no-op in RAM).
  void flush() { weights_.flush(); }
  /// Row `r`, [row_dim].
  std::span<float> row(int64_t r) {
    ENGRAM_CHECK(r >= 0 && r < rows_, "TrainableTable: row ", r, " out of range [0, ", rows_, ")");
    return weights_.span().subspan(static_cast<size_t>(r * row_dim_),
                                   static_cast<size_t>(row_dim_));
  }

 private:
  static int64_t checked_numel(int64_t rows, int64_t row_dim) {
    int64_t n = 0;
    ENGRAM_CHECK(rows >= 0 && row_dim > 0 && !__builtin_mul_overflow(rows, row_dim, &n),
                 "TrainableTable: invalid shape [", rows, ", ", row_dim, "]");
    return n;
  }
  int64_t rows_ = 0;
  int64_t row_dim_ = 0;
  RowStorage<float> weights_;
};

}  // namespace engram::train
