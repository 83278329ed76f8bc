// engram/detail/aligned_buffer.hpp: AlignedBuffer<T>, grow-only 64-byte aligned scratch storage.
//
// ensure(n) returns at least n uninitialised elements, reallocating only when n exceeds every
// earlier request, so a reused workspace stops allocating in the steady state. Allocation goes
// through aligned operator new (failures are std::bad_alloc; replacements of it see the buffers).
// Owns its storage; movable, not copyable; not thread-safe (one buffer per thread or workspace).
//
//   engram::detail::AlignedBuffer<float> scratch;
//   float* rows = scratch.ensure(n * d);   // reused on the next call of the same size or less
#pragma once

#include <cstddef>
#include <memory>
#include <new>

namespace engram::detail {

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
