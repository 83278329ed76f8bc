// Counts global operator new calls, for tests that check a steady state allocates nothing.
// Replaces the global operator new/delete: include it from exactly one source file of a test
// executable. test::allocations() is the count so far.
// (noinline: GCC would otherwise see free() applied to an operator-new pointer and warn.)
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace engram::test {
inline std::atomic<int64_t> g_allocations{0};
inline int64_t allocations() { return g_allocations.load(std::memory_order_relaxed); }
}  // namespace engram::test

__attribute__((noinline)) void* operator new(size_t size) {
  engram::test::g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
__attribute__((noinline)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, size_t) noexcept { std::free(p); }
