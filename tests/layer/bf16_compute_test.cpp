// CheckpointOptions::bf16_compute: the stacked projection with activations rounded to bf16 (on
// AVX512-BF16 CPUs, with each kernel bf16_dot() can pick: vdpbf16ps and the f32 panel kernel;
// exact widening elsewhere). Checked against the layer's own
// forward_reference (same arithmetic), against the bf16_projection layer (differs only by the
// rounding of the activations), and against the oracle run in bf16 (make_bf16_golden.py:
// module and hidden states in torch.bfloat16) and in f32. Measured on the demo goldens (max error
// relative to max |output|): the oracle's own bf16 run is 0.7% (demo_a) and 1.0% (demo_c) from
// its f32 run; this layer is printed by the test.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "engram/detail/cpu_features.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "engram/nn/bf16_dot.hpp"
#include "layer/layer_golden.hpp"

namespace engram {
namespace {

using test::LayerGolden;
using test::load_layer_golden;
using test::relative_max_error;

struct DotPin {
  explicit DotPin(Bf16Dot dot) : old(set_bf16_dot(dot)) {}
  ~DotPin() { set_bf16_dot(old); }
  Bf16Dot old;
};

const char* dot_name(Bf16Dot dot) { return dot == Bf16Dot::kBf16 ? "vdpbf16ps" : "f32_fma"; }

class Bf16ComputeTest : public ::testing::TestWithParam<std::tuple<const char*, Bf16Dot>> {};

TEST_P(Bf16ComputeTest, MatchesItsReferenceAndTheBf16Oracle) {
  const auto [golden, dot] = GetParam();
  const DotPin pin(dot);
  const LayerGolden g = load_layer_golden(golden);
  const SafetensorsFile bf16_golden(g.dir + "/expected_bf16.safetensors");
  const std::vector<float> oracle_bf16 = bf16_golden.at("output_bf16").copy_as<float>();
  ASSERT_EQ(oracle_bf16.size(), g.expected.size());

  CheckpointOptions native{.prefix = "", .column_rows = g.primes};
  native.bf16_compute = true;
  CheckpointOptions widening{.prefix = "", .column_rows = g.primes};
  widening.bf16_projection = true;
  const auto layer = EngramLayer::load(g.config, g.weights, native);
  ASSERT_TRUE(layer.projection().is_bf16());
  EXPECT_EQ(layer.projection().bf16_weights().native_bf16(), best_isa() >= Isa::kAvx512Bf16);
  EXPECT_EQ(
      layer.projection().bf16_weights().uses_vdpbf16ps(),
      best_isa() >= Isa::kAvx512Bf16 && (dot == Bf16Dot::kBf16 || !detail::kHasPanelKernel<float>));
  const std::vector<float> out = test::forward_whole(layer, g);
  std::vector<float> reference(out.size());
  layer.forward_reference(g.hash_ids, g.hidden, g.batch, g.seq_len, reference);
  const std::vector<float> exact =
      test::forward_whole(EngramLayer::load(g.config, g.weights, widening), g);

  const double vs_reference = relative_max_error(out, reference);
  const double vs_exact = relative_max_error(out, exact);
  const double vs_oracle_bf16 = relative_max_error(out, oracle_bf16);
  const double vs_oracle_f32 = relative_max_error(out, g.expected);
  const double oracle_gap = relative_max_error(oracle_bf16, g.expected);
  std::printf(
      "%s %s native=%d: vs own reference %.2e, vs exact widening %.2e, vs oracle bf16 %.2e, "
      "vs oracle f32 %.2e (oracle bf16 vs f32 %.2e)\n",
      golden, dot_name(dot), int(layer.projection().bf16_weights().native_bf16()), vs_reference,
      vs_exact, vs_oracle_bf16, vs_oracle_f32, oracle_gap);
  EXPECT_LT(vs_reference, 1e-5);
  // Rounding the activations to bf16 moves the output by less than the oracle's bf16 run does.
  EXPECT_LT(vs_exact, oracle_gap);
  EXPECT_LT(vs_oracle_f32, oracle_gap);
  EXPECT_LT(vs_oracle_bf16, 2.0 * oracle_gap);
  if (layer.projection().bf16_weights().native_bf16()) {
    EXPECT_GT(vs_exact, 1e-6) << "the activations were not rounded";
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, Bf16ComputeTest,
                         ::testing::Combine(::testing::Values("demo_a", "demo_c"),
                                            ::testing::Values(Bf16Dot::kBf16, Bf16Dot::kF32)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) + "_" +
                                  dot_name(std::get<1>(info.param));
                         });

// The fused layer takes the same option (no bf16 oracle run for it): its own reference, and the
// exact-widening layer up to the rounding of the activations.
class Bf16ComputeFusedTest : public ::testing::TestWithParam<const char*> {};

TEST_P(Bf16ComputeFusedTest, MatchesItsReference) {
  const LayerGolden g = load_layer_golden(GetParam());
  CheckpointOptions native{.prefix = "", .column_rows = g.primes};
  native.bf16_compute = true;
  CheckpointOptions widening{.prefix = "", .column_rows = g.primes};
  widening.bf16_projection = true;
  const auto layer = FusedEngramLayer::load(g.config, g.weights, native);
  EXPECT_EQ(layer.projection().bf16_weights().native_bf16(), best_isa() >= Isa::kAvx512Bf16);
  const std::vector<float> out = test::forward_whole(layer, g);
  std::vector<float> reference(out.size());
  layer.forward_reference(g.hash_ids, g.hidden, g.batch, g.seq_len, reference);
  const std::vector<float> exact =
      test::forward_whole(FusedEngramLayer::load(g.config, g.weights, widening), g);
  EXPECT_LT(relative_max_error(out, reference), 1e-5);
  EXPECT_LT(relative_max_error(out, exact), 1e-2);
  EXPECT_LT(relative_max_error(out, g.expected), 2e-2);
}

INSTANTIATE_TEST_SUITE_P(Goldens, Bf16ComputeFusedTest, ::testing::Values("fused_a", "fused_b"));

}  // namespace
}  // namespace engram
