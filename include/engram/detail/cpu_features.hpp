// engram/detail/cpu_features.hpp: which x86 instruction sets this CPU and OS support, at run time.
//
// Kernels with ISA-specific bodies compile those bodies with function-level target attributes
// (`__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))`), so one build runs on every
// x86-64 machine, and pick one through `active_isa()` once per call (never per element).
//   Isa::kScalar      portable C++ (the reference; every machine)
//   Isa::kAvx2        AVX2 + FMA + F16C
//   Isa::kAvx512      AVX-512 F, BW, VL, DQ
//   Isa::kAvx512Bf16  kAvx512 plus AVX512-BF16 (vdpbf16ps)
// The levels are ordered: a machine with one has every level below it.
// `best_isa()` is what the CPU (cpuid) and the OS (xgetbv: the vector registers are saved) allow;
// `active_isa()` is that, lowered by `set_isa_limit(isa)` or by the environment variable
// ENGRAM_ISA=scalar|avx2|avx512|avx512bf16 (read once; another value is ignored with a line on
// stderr), never raised above best_isa(), so tests can
// run every path the machine has against the scalar reference. Thread safety: the detection runs
// once (static init); set_isa_limit is an atomic store meant for tests and start-up.
#pragma once

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace engram {

enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Bf16 = 3 };

/// The name used by ENGRAM_ISA and in reports: "scalar", "avx2", "avx512", "avx512bf16".
constexpr std::string_view isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx512Bf16:
      return "avx512bf16";
    case Isa::kScalar:
      break;
  }
  return "scalar";
}

/// Parses an ISA name; returns false (and leaves `out`) for anything else.
constexpr bool parse_isa(std::string_view name, Isa& out) noexcept {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Bf16}) {
    if (name == isa_name(isa)) {
      out = isa;
      return true;
    }
  }
  return false;
}

namespace detail {

/// True when cpuid's vendor string is "AuthenticAMD" (kernel choices that differ by vendor).
inline bool cpu_is_amd() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return false;
  return ebx == 0x68747541u && edx == 0x69746e65u && ecx == 0x444d4163u;
#else
  return false;
#endif
}

inline Isa detect_isa() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return Isa::kScalar;
  const bool osxsave = (ecx >> 27) & 1u, avx = (ecx >> 28) & 1u, fma = (ecx >> 12) & 1u,
             f16c = (ecx >> 29) & 1u;
  if (!osxsave || !avx) return Isa::kScalar;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const bool os_ymm = (xcr0_lo & 0x6u) == 0x6u;    // SSE and AVX state
  const bool os_zmm = (xcr0_lo & 0xE6u) == 0xE6u;  // plus opmask, ZMM_Hi256, Hi16_ZMM
  if (!os_ymm || __get_cpuid_max(0, nullptr) < 7) return Isa::kScalar;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = (ebx >> 5) & 1u;
  const bool avx512f = (ebx >> 16) & 1u, avx512dq = (ebx >> 17) & 1u, avx512bw = (ebx >> 30) & 1u,
             avx512vl = (ebx >> 31) & 1u;
  if (!(avx2 && fma && f16c)) return Isa::kScalar;
  if (!(os_zmm && avx512f && avx512dq && avx512bw && avx512vl)) return Isa::kAvx2;
  unsigned eax1 = 0, ebx1 = 0, ecx1 = 0, edx1 = 0;
  __cpuid_count(7, 1, eax1, ebx1, ecx1, edx1);
  const bool avx512bf16 = (eax1 >> 5) & 1u;
  return avx512bf16 ? Isa::kAvx512Bf16 : Isa::kAvx512;
#else
  return Isa::kScalar;
#endif
}

/// One line on stderr for an environment setting the library does not know (it is then ignored),
/// so that a typo is not silently measured as the default.
inline void warn_unknown_setting(const char* variable, const char* value,
                                 const char* choices) noexcept {
  std::fprintf(stderr, "engram: ignoring %s=%s (expected one of %s)\n", variable, value, choices);
}

inline std::atomic<int>& isa_limit() noexcept {
  static std::atomic<int> limit{[] {
    Isa env = Isa::kAvx512Bf16;
    if (const char* s = std::getenv("ENGRAM_ISA"); s != nullptr && !parse_isa(s, env))
      warn_unknown_setting("ENGRAM_ISA", s, "scalar, avx2, avx512, avx512bf16");
    return static_cast<int>(env);
  }()};
  return limit;
}

}  // namespace detail

/// What this CPU and OS support (detected once).
inline Isa best_isa() noexcept {
  static const Isa best = detail::detect_isa();
  return best;
}

/// The level kernels use now: best_isa() lowered by set_isa_limit() or ENGRAM_ISA.
inline Isa active_isa() noexcept {
  const int limit = detail::isa_limit().load(std::memory_order_relaxed);
  const int best = static_cast<int>(best_isa());
  return static_cast<Isa>(limit < best ? limit : best);
}

/// Caps active_isa() at `isa` (tests run each path; a user can pin a path). Returns the old cap.
inline Isa set_isa_limit(Isa isa) noexcept {
  return static_cast<Isa>(detail::isa_limit().exchange(static_cast<int>(isa)));
}

}  // namespace engram
