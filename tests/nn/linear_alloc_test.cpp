// LinearT::forward when memory runs out: the aligned operator new is replaced (this executable
// only) by one that, once armed, refuses requests above a limit. The panel kernel's scratch (x
// packed for the threads) is allocated by forward before the parallel region, so the failure is a
// std::bad_alloc the caller catches, and the next call, disarmed, still computes the right output.
// (It was allocated inside the noexcept kernel, on every thread: std::terminate.)
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <thread>
#include <type_traits>
#include <vector>

#include "engram/nn/linear.hpp"

namespace {
std::atomic<bool> g_armed{false};
std::atomic<std::size_t> g_limit{0};
std::atomic<int> g_refused{0};

void* aligned_new(std::size_t size, std::align_val_t alignment) {
  if (g_armed.load() && size > g_limit.load()) {
    g_refused.fetch_add(1);
    throw std::bad_alloc();
  }
  const auto a = static_cast<std::size_t>(alignment);
  void* p = std::aligned_alloc(a, (size + a - 1) / a * a);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t size, std::align_val_t a) { return aligned_new(size, a); }
void* operator new[](std::size_t size, std::align_val_t a) { return aligned_new(size, a); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace engram {
namespace {

template <class Weight>
void check_allocation_failure_is_an_exception() {
  constexpr int64_t kIn = 256, kOut = 200, kRows = 600;  // x: 600 KB, above the limit below
  std::vector<float> x(static_cast<size_t>(kRows * kIn)), bias(kOut);
  std::vector<Weight> w(static_cast<size_t>(kOut * kIn));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 17) * 0.125f - 1.0f;
  for (size_t i = 0; i < w.size(); ++i) {
    const float v = static_cast<float>(i % 13) * 0.0625f - 0.375f;  // exact in bf16
    if constexpr (std::is_same_v<Weight, float>)
      w[i] = v;
    else
      w[i] = BFloat16{detail::f32_to_bf16_bits(v)};
  }
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = static_cast<float>(i) * 0.01f;
  const LinearT<float, Weight> linear(w, kOut, kIn, bias);  // packs W: allocates while disarmed
  std::vector<float> y(static_cast<size_t>(kRows * kOut)), want(y.size());

  if (!detail::kHasPanelKernel<float>) {
    GTEST_SKIP() << "no panel kernel in this build (GEMM scratch is Eigen's or OpenBLAS's)";
  }
  // On a thread of its own: its grow-only scratch starts empty whatever ran before.
  bool threw = false;
  std::thread([&] {
    g_limit = 64 << 10;
    g_refused = 0;
    g_armed = true;
    try {
      linear.forward(x.data(), kRows, y.data());
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    g_armed = false;
  }).join();
  EXPECT_TRUE(threw) << "forward needed no scratch above 64 KiB";
  EXPECT_GE(g_refused.load(), 1);

  linear.forward(x.data(), kRows, y.data());
  reference::linear(x.data(), w.data(), bias.data(), want.data(), kRows, kIn, kOut);
  for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], want[i], 1e-4f) << i;
}

TEST(LinearAllocation, FailureInForwardIsBadAllocNotTerminate) {
  check_allocation_failure_is_an_exception<float>();
}

TEST(LinearAllocation, BF16WeightsToo) { check_allocation_failure_is_an_exception<BFloat16>(); }

}  // namespace
}  // namespace engram
