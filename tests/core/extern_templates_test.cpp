// ENGRAM_EXTERN_TEMPLATES: this translation unit is compiled with the switch (it links
// engram::instantiations, which defines it), so the common types below are only declared
// `extern template` here and their code comes from src/engram_instantiations.cpp. It must link
// and compute what the references compute: the hasher against the oracle's goldens, the
// projections (f32 and bf16 weights) against reference::linear at sizes off the SIMD width, and
// the two float layers (EngramLayer, V41EngramLayer) against the layer goldens and, bitwise,
// against a header-only instantiation compiled in this TU (a hash policy that only renames
// NumpyMultiplyXor makes EngramLayerT<float, Block, HeaderOnlyHash> a distinct type, which this TU
// instantiates and compiles itself from the same member definitions).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "engram/detail/compiled.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/nn/linear.hpp"
#include "hashing/hashing_test_data.hpp"
#include "layer/layer_golden.hpp"
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

// The library's layers run on OpenMP threads when this consumer does (it was built without OpenMP
// once, so that every layer from engram::instantiations ran on one thread).
TEST(ExternTemplates, LibraryIsBuiltWithOpenMPWhenTheConsumerIs) {
#ifdef _OPENMP
  EXPECT_TRUE(detail::instantiations_use_openmp());
#else
  GTEST_SKIP() << "this test binary is built without OpenMP";
#endif
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

/// NumpyMultiplyXor under another name: layers over it are not among the extern instantiations.
struct HeaderOnlyHash : NumpyMultiplyXor {
  using NumpyMultiplyXor::NumpyMultiplyXor;
};

/// out of layer.forward_tokens (whole) then layer.forward (hash ids, streaming in two chunks).
template <class Layer>
std::vector<float> run_layer(const Layer& layer, const test::LayerGolden& g) {
  typename Layer::Workspace ws;
  std::vector<float> out(g.expected.size() * 2, -1.0f);
  const std::span<float> whole(out.data(), g.expected.size());
  layer.forward_tokens(g.input_ids, g.hidden, g.batch, g.seq_len, whole, ws);
  std::vector<typename Layer::State> states;
  for (int64_t b = 0; b < g.batch; ++b) states.push_back(layer.make_state());
  std::vector<typename Layer::State*> ptrs;
  for (auto& s : states) ptrs.push_back(&s);
  // Chunks of T / 2 and T - T / 2 tokens, per sequence (rows of [B, t, ...] gathered per chunk).
  const int64_t cols = layer.num_columns(), c = g.width();
  for (const auto& [begin, end] : {std::pair<int64_t, int64_t>{0, g.seq_len / 2},
                                   std::pair<int64_t, int64_t>{g.seq_len / 2, g.seq_len}}) {
    const int64_t t = end - begin;
    std::vector<int64_t> ids(static_cast<size_t>(g.batch * t * cols));
    std::vector<float> hidden(static_cast<size_t>(g.batch * t * c)), part(hidden.size());
    for (int64_t b = 0; b < g.batch; ++b) {
      std::copy_n(g.hash_ids.begin() + (b * g.seq_len + begin) * cols, t * cols,
                  ids.begin() + b * t * cols);
      std::copy_n(g.hidden.begin() + (b * g.seq_len + begin) * c, t * c,
                  hidden.begin() + b * t * c);
    }
    layer.forward(ids, hidden, g.batch, t, part, ptrs, ws);
    for (int64_t b = 0; b < g.batch; ++b)
      std::copy_n(part.begin() + b * t * c, t * c,
                  out.begin() + static_cast<std::ptrdiff_t>(g.expected.size()) +
                      (b * g.seq_len + begin) * c);
  }
  return out;
}

template <class Block>
void expect_layer_matches_header_only(const std::vector<const char*>& goldens) {
  for (const char* name : goldens) {
    SCOPED_TRACE(name);
    const test::LayerGolden g = test::load_layer_golden(name);
    const auto library = test::load_with_hasher<EngramLayerT<float, Block>>(g, g.layer_id);
    const EngramLayerT<float, Block, HeaderOnlyHash> header_only =
        EngramLayerT<float, Block, HeaderOnlyHash>::load(
            g.config, g.weights,
            std::make_shared<const NgramHasherT<HeaderOnlyHash>>(g.config, test::dsv3_lookup(),
                                                                 g.layer_id));
    const std::vector<float> a = run_layer(library, g), b = run_layer(header_only, g);
    const std::span<const float> whole(a.data(), g.expected.size());
    EXPECT_LT(test::oracle_error(whole, std::span<const float>(g.expected)),
              test::kOracleTolerance);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
        << "the library's instantiation differs from the header-only one";
  }
}

TEST(ExternTemplates, DemoLayerFromTheLibraryEqualsTheHeaderOnlyBuild) {
  expect_layer_matches_header_only<DemoBlock>({"demo_a", "demo_b", "demo_c", "demo_d"});
}

TEST(ExternTemplates, V41LayerFromTheLibraryEqualsTheHeaderOnlyBuild) {
  expect_layer_matches_header_only<V41Block>({"fused_a", "fused_b", "fused_c"});
}

}  // namespace
}  // namespace engram
