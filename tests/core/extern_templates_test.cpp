// ENGRAM_EXTERN_TEMPLATES: this translation unit is compiled with the switch (it links
// engram::instantiations, which defines it), so the common types below are only declared
// `extern template` here and their code comes from src/engram_instantiations.cpp. It must link
// and compute what the references compute: the hasher against the oracle's goldens, the
// projections (f32 and bf16 weights) against reference::linear at sizes off the SIMD width.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "engram/hashing/ngram_hasher.hpp"
#include "engram/nn/linear.hpp"
#include "hashing/hashing_test_data.hpp"
#include "support/random.hpp"

#ifndef ENGRAM_EXTERN_TEMPLATES
#error \
    "extern_templates_test must be compiled with ENGRAM_EXTERN_TEMPLATES (link engram::instantiations)"
#endif

namespace engram {
namespace {

TEST(ExternTemplates, HasherFromTheLibraryMatchesTheOracle) {
  for (const std::string& name : test::golden_case_names()) {
    const test::GoldenCase g = test::load_golden(name);
    SCOPED_TRACE(name);
    const NgramHasher h(g.config, g.lookup, g.layer_id);
    std::vector<int64_t> out(g.hash_ids.size());
    h.hash(g.ids, g.batch, g.seqlen, out);
    EXPECT_EQ(out, g.hash_ids);
  }
}

template <class Weight>
void expect_linear_matches_reference(int64_t rows, int64_t in, int64_t out) {
  SCOPED_TRACE(::testing::Message() << rows << " x " << in << " -> " << out);
  const std::vector<float> x = test::normal_values(static_cast<size_t>(rows * in), 1);
  const std::vector<float> wf = test::normal_values(static_cast<size_t>(out * in), 2);
  const std::vector<float> b = test::normal_values(static_cast<size_t>(out), 3);
  std::vector<Weight> w;
  for (float v : wf) {
    if constexpr (std::is_same_v<Weight, BFloat16>)
      w.push_back(to_bfloat16(v));
    else
      w.push_back(v);
  }
  std::vector<float> fast(static_cast<size_t>(rows * out)), ref(fast.size());
  LinearT<float, Weight>(w, out, in, b).forward(x.data(), rows, fast.data());
  reference::linear(x.data(), w.data(), b.data(), ref.data(), rows, in, out);
  for (size_t i = 0; i < ref.size(); ++i)
    ASSERT_NEAR(fast[i], ref[i], 1e-4f * (1.0f + std::abs(ref[i]))) << "at " << i;
}

TEST(ExternTemplates, ProjectionsFromTheLibraryMatchTheReference) {
  for (int64_t rows : {1, 7})
    for (int64_t in : {1, 85})
      for (int64_t out : {1, 163}) {
        expect_linear_matches_reference<float>(rows, in, out);
        expect_linear_matches_reference<BFloat16>(rows, in, out);
      }
}

}  // namespace
}  // namespace engram
