// engram/nn/bf16_dot.hpp: which instruction multiplies operands that are exact in bf16 on a CPU
// with AVX512-BF16: `vdpbf16ps`, or f32 FMA on the operands widened exactly to f32.
//
// Both compute the same products exactly (an 8-bit by 8-bit significand fits f32) and sum them in
// f32; they differ only in the order and rounding of those sums (and vdpbf16ps flushes subnormal
// operands). Which is faster is a property of the CPU model: AMD's Zen 4 and 5 run vdpbf16ps at
// twice the f32 FMA multiply rate, Intel's Cooper Lake and later at most at the f32 FMA rate (85
// against 173 GFLOP/s a core in `engram probe` on a Xeon here). Users: Fp8BlockLinear (FP8 weights
// decoded to bf16) and LinearT<float, BFloat16> with Bf16Compute::kNative (x rounded to bf16).
// The choice is not a timing: the same machine always picks the same kernel.
// ENGRAM_BF16_DOT=bf16|f32|auto (read once) or set_bf16_dot() pin it.
//
//   if (engram::bf16_dot() == engram::Bf16Dot::kBf16) { /* vdpbf16ps kernel */ }
#pragma once

#include <atomic>
#include <cstdlib>
#include <string_view>

#include "engram/detail/cpu_features.hpp"

namespace engram {

/// The kernel for bf16-exact operands at active_isa() avx512bf16: kBf16 multiplies with vdpbf16ps,
/// kF32 with f32 FMA on the exactly widened operands. kAuto: the CPU model's choice.
enum class Bf16Dot : int { kAuto = 0, kBf16 = 1, kF32 = 2 };

namespace detail {

/// Whether vdpbf16ps outpaces f32 FMA per core: true on AMD, false elsewhere (see the banner).
inline bool bf16_dot_outpaces_fma() noexcept { return cpu_is_amd(); }

inline std::atomic<int>& bf16_dot_setting() noexcept {
  static std::atomic<int> setting{[] {
    const char* s = std::getenv("ENGRAM_BF16_DOT");
    const std::string_view v = s ? s : "";
    if (s != nullptr && v != "bf16" && v != "f32" && v != "auto")
      warn_unknown_setting("ENGRAM_BF16_DOT", s, "bf16, f32, auto");
    return static_cast<int>(v == "bf16"  ? Bf16Dot::kBf16
                            : v == "f32" ? Bf16Dot::kF32
                                         : Bf16Dot::kAuto);
  }()};
  return setting;
}

}  // namespace detail

/// The kernel in use (never kAuto): set_bf16_dot()'s or ENGRAM_BF16_DOT's choice, else kBf16
/// where detail::bf16_dot_outpaces_fma(), else kF32.
inline Bf16Dot bf16_dot() noexcept {
  const auto setting =
      static_cast<Bf16Dot>(detail::bf16_dot_setting().load(std::memory_order_relaxed));
  if (setting != Bf16Dot::kAuto) return setting;
  static const Bf16Dot automatic = detail::bf16_dot_outpaces_fma() ? Bf16Dot::kBf16 : Bf16Dot::kF32;
  return automatic;
}

/// Pins the kernel (kAuto: the CPU's choice again); returns the old setting. For tests,
/// benchmarks and start-up, like set_isa_limit.
inline Bf16Dot set_bf16_dot(Bf16Dot dot) noexcept {
  return static_cast<Bf16Dot>(detail::bf16_dot_setting().exchange(static_cast<int>(dot)));
}

}  // namespace engram
