#include "engram/detail/cpu_features.hpp"

#include <gtest/gtest.h>

namespace engram {
namespace {

TEST(CpuFeatures, NamesRoundTrip) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Bf16}) {
    Isa parsed = Isa::kScalar;
    ASSERT_TRUE(parse_isa(isa_name(isa), parsed)) << isa_name(isa);
    EXPECT_EQ(parsed, isa);
  }
  Isa untouched = Isa::kAvx2;
  EXPECT_FALSE(parse_isa("sse9", untouched));
  EXPECT_EQ(untouched, Isa::kAvx2);
}

// The compiler's own view of the build machine (-march=native in the tests) bounds what cpuid may
// report from below: a build that targets an instruction set runs on a CPU that has it.
TEST(CpuFeatures, DetectionAgreesWithTheCompilerTarget) {
  const Isa best = best_isa();
#if defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__)
  EXPECT_EQ(best, Isa::kAvx512Bf16);
#elif defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__)
  EXPECT_GE(static_cast<int>(best), static_cast<int>(Isa::kAvx512));
#elif defined(__AVX2__) && defined(__FMA__)
  EXPECT_GE(static_cast<int>(best), static_cast<int>(Isa::kAvx2));
#endif
#if defined(__x86_64__)
  EXPECT_EQ(best >= Isa::kAvx2, static_cast<bool>(__builtin_cpu_supports("avx2")));
  EXPECT_EQ(best >= Isa::kAvx512, static_cast<bool>(__builtin_cpu_supports("avx512bw")));
#endif
}

TEST(CpuFeatures, LimitLowersButNeverRaises) {
  const Isa best = best_isa();
  const Isa old = set_isa_limit(Isa::kScalar);
  EXPECT_EQ(active_isa(), Isa::kScalar);
  set_isa_limit(Isa::kAvx512Bf16);
  EXPECT_EQ(active_isa(), best);
  set_isa_limit(old);
}

}  // namespace
}  // namespace engram
