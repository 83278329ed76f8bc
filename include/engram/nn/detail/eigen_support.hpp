// engram/nn/detail/eigen_support.hpp: internals shared by the nn/ and layer/ kernels.
//
// - Eigen map aliases for row-major `[rows, cols]` buffers (PyTorch's layout).
// - parallel_for: splits a row range over Eigen::nbThreads() OpenMP threads when the translation
//   unit is compiled with OpenMP, else runs serially. The body must not throw.
// - AlignedBuffer: a grow-only, uninitialised, 64-byte aligned scratch buffer (workspaces).
// Not part of the public API.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace engram::detail {

template <class Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using RowMatrixMap = Eigen::Map<RowMatrix<Scalar>>;
template <class Scalar>
using ConstRowMatrixMap = Eigen::Map<const RowMatrix<Scalar>>;
template <class Scalar>
using ArrayMap = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
template <class Scalar>
using ConstArrayMap = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>;

/// Threads the kernels may use: Eigen's setting (1 without OpenMP).
inline int kernel_threads() noexcept { return std::max(1, Eigen::nbThreads()); }

/// Calls body(begin, end, worker) on disjoint sub-ranges covering [0, n), worker in
/// [0, kernel_threads()), in parallel when OpenMP is enabled and each thread gets at least `grain`
/// items. `body` must not throw.
template <class Body>
void parallel_for(int64_t n, int64_t grain, const Body& body) {
  if (n <= 0) return;
#ifdef _OPENMP
  const int64_t by_work = std::max<int64_t>(1, n / std::max<int64_t>(1, grain));
  const int threads = static_cast<int>(std::min<int64_t>(kernel_threads(), by_work));
  if (threads > 1 && !omp_in_parallel()) {
#pragma omp parallel num_threads(threads)
    {
      const int64_t id = omp_get_thread_num();
      const int64_t count = omp_get_num_threads();
      const int64_t begin = n * id / count;
      const int64_t end = n * (id + 1) / count;
      if (begin < end) body(begin, end, static_cast<int>(id));
    }
    return;
  }
#else
  (void)grain;
#endif
  body(int64_t{0}, n, 0);
}

/// Grow-only scratch storage: `ensure(n)` returns at least n uninitialised elements, reallocating
/// only when n exceeds every earlier request (so a reused buffer stops allocating); throws
/// std::bad_alloc (aligned operator new) when it cannot.
template <class T>
class AlignedBuffer {
 public:
  static constexpr size_t kAlignment = 64;

  T* ensure(size_t n) {
    if (n > capacity_) {
      const size_t bytes = (n * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
      // operator new: failures are std::bad_alloc, and replacements of it see these buffers.
      data_.reset(static_cast<T*>(::operator new (bytes, std::align_val_t{kAlignment})));
      capacity_ = n;
    }
    return data_.get();
  }
  T* data() noexcept { return data_.get(); }
  const T* data() const noexcept { return data_.get(); }
  size_t capacity() const noexcept { return capacity_; }

 private:
  struct Free {
    void operator()(T* p) const noexcept { ::operator delete (p, std::align_val_t{kAlignment}); }
  };
  std::unique_ptr<T, Free> data_;
  size_t capacity_ = 0;
};

}  // namespace engram::detail
