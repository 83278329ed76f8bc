// engram/detail/parallel.hpp: parallel_for, the one threading primitive of the kernels.
//
// parallel_for(n, grain, body) calls body(begin, end, worker) on disjoint sub-ranges covering
// [0, n), worker in [0, kernel_threads()), in parallel over OpenMP threads when the translation
// unit is compiled with OpenMP and each thread gets at least `grain` items; serially otherwise, and
// inside an enclosing parallel region. kernel_threads() is Eigen's setting (Eigen::setNbThreads,
// else OMP_NUM_THREADS; 1 without OpenMP), so one knob sets the GEMMs and engram's own loops.
// `body` must not throw. Reentrant; no state of its own.
//
//   engram::detail::parallel_for(rows, 64, [&](int64_t begin, int64_t end, int worker) {
//     for (int64_t r = begin; r < end; ++r) out[r] = f(r);
//   });
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace engram::detail {

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

}  // namespace engram::detail
