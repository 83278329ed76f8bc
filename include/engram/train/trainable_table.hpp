// engram/train/trainable_table.hpp: an embedding table being trained, f32 rows in RAM.
//
// TrainableTable holds weights F32 [rows, row_dim] (row-major). ZeroedBuffer<T> is the storage of
// the table and of the optimisers' state beside it: an anonymous private mapping, so its pages are
// zero and only committed when first written. A table of 10^8 rows whose training touches a few
// thousand rows costs memory for those rows' pages only (optimiser state the same way).
//
// Guarantees: row(r) is checked against rows(); storage is owned and never reallocated (spans stay
// valid for the object's lifetime); moving transfers it. Not copyable (tables are large).
// Thread safety: plain owner; concurrent writes to distinct rows are safe (the optimisers do so).
//
//   engram::train::TrainableTable table(1 << 20, 32);          // zero rows, committed lazily
//   table.assign(std::span<const float>(initial));              // or copy rows in
//   optimizer.step(table, grad);                                // train/optimizers.hpp
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "engram/detail/posix_file.hpp"
#include "engram/error.hpp"

namespace engram::train {

/// Zero-initialised storage of `size` values, pages committed on first write (see the banner).
template <class T>
class ZeroedBuffer {
 public:
  ZeroedBuffer() = default;
  explicit ZeroedBuffer(int64_t size) : size_(size) {
    ENGRAM_CHECK(size >= 0, "ZeroedBuffer: negative size ", size);
    if (size == 0) return;
    const size_t bytes = static_cast<size_t>(size) * sizeof(T);
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ENGRAM_CHECK(p != MAP_FAILED, "ZeroedBuffer: mmap of ", bytes,
                 " bytes failed: ", engram::detail::errno_text(errno));
    data_ = static_cast<T*>(p);
  }
  ZeroedBuffer(ZeroedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  ZeroedBuffer& operator=(ZeroedBuffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ZeroedBuffer(const ZeroedBuffer&) = delete;
  ZeroedBuffer& operator=(const ZeroedBuffer&) = delete;
  ~ZeroedBuffer() { release(); }

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  int64_t size() const noexcept { return size_; }
  std::span<T> span() noexcept { return {data_, static_cast<size_t>(size_)}; }
  std::span<const T> span() const noexcept { return {data_, static_cast<size_t>(size_)}; }

 private:
  void release() noexcept {
    if (data_) ::munmap(data_, static_cast<size_t>(size_) * sizeof(T));
    data_ = nullptr;
  }
  T* data_ = nullptr;
  int64_t size_ = 0;
};

/// f32 table rows [rows, row_dim] being trained (see the banner).
class TrainableTable {
 public:
  TrainableTable() = default;
  /// Zero rows, committed on first write.
  TrainableTable(int64_t rows, int64_t row_dim)
      : rows_(rows), row_dim_(row_dim), weights_(checked_numel(rows, row_dim)) {}
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
  ZeroedBuffer<float> weights_;
};

}  // namespace engram::train
