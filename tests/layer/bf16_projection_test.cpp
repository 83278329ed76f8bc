// CheckpointOptions::bf16_projection: the stacked keys + value projection stored in bf16. The
// layer must equal the f32 layer loaded from a checkpoint whose projection tensors were rounded
// to bf16 beforehand (same weights, f32 accumulation), stay close to the oracle, agree with its
// own forward_reference, stream chunk by chunk, and refuse what it cannot represent.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "engram/detail/float16.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "layer/layer_golden.hpp"
#include "support/error_of.hpp"

namespace engram {
namespace {

using test::error_of;
using test::LayerGolden;
using test::load_layer_golden;
using test::relative_max_error;
using test::temp_path;
using test::write_checkpoint;
using ::testing::HasSubstr;

bool is_projection(const LayerGolden& g, const std::string& name) {
  if (g.config.variant == Variant::kFused) return name == "wkv.weight";
  return name == "value_proj.weight" ||
         (name.starts_with("key_projs.") && name.ends_with(".weight"));
}

/// The golden's checkpoint with its projection weights stored as BF16 tensors (rounded to
/// nearest even): loading it as f32 gives the f32 layer on exactly the bf16 weights.
std::string write_rounded_checkpoint(const LayerGolden& g, const std::string& name,
                                     std::vector<std::vector<BFloat16>>& keep) {
  const std::string path = temp_path(name);
  write_checkpoint(g, path, "", [&](std::vector<TensorWrite>& tensors) {
    for (auto& t : tensors) {
      if (!is_projection(g, t.name)) continue;
      ASSERT_EQ(t.dtype, DType::kF32) << t.name;
      std::vector<float> values(t.bytes.size() / sizeof(float));
      std::memcpy(values.data(), t.bytes.data(), t.bytes.size());
      auto& rounded = keep.emplace_back(values.size());
      detail::f32_to_bf16(values.data(), rounded.data(), static_cast<int64_t>(values.size()));
      t.dtype = DType::kBF16;
      t.bytes = std::as_bytes(std::span<const BFloat16>(rounded));
    }
  });
  return path;
}

class Bf16ProjectionTest : public ::testing::TestWithParam<const char*> {};

struct Outputs {
  std::vector<float> fast, reference, on_rounded, unrounded;
};

/// The bf16-projection layer's output and forward_reference, and the f32 layer's on the rounded
/// checkpoint and on the original one.
template <class Layer>
Outputs run_all(const LayerGolden& g, const std::string& rounded_path) {
  CheckpointOptions bf16{.prefix = "", .column_rows = g.primes};
  bf16.bf16_projection = true;
  const CheckpointOptions f32{.prefix = "", .column_rows = g.primes};
  const int64_t m = g.config.memory_dim(), n = (g.config.hc_mult + 1) * g.config.hidden_size;
  const auto layer = Layer::load(g.config, g.weights, bf16);
  EXPECT_TRUE(layer.projection().is_bf16());
  EXPECT_TRUE(layer.weights().kv_weight.empty());
  EXPECT_EQ(static_cast<int64_t>(layer.weights().kv_weight_bf16.size()), n * m);
  Outputs o;
  o.fast = test::forward_whole(layer, g);
  o.reference.resize(g.expected.size());
  layer.forward_reference(g.hash_ids, g.hidden, g.batch, g.seq_len, o.reference);
  o.on_rounded = test::forward_whole(Layer::load(g.config, rounded_path, f32), g);
  o.unrounded = test::forward_whole(Layer::load(g.config, g.weights, f32), g);
  return o;
}

TEST_P(Bf16ProjectionTest, EqualsF32LayerOnRoundedWeights) {
  const LayerGolden g = load_layer_golden(GetParam());
  std::vector<std::vector<BFloat16>> keep;
  const std::string rounded_path =
      write_rounded_checkpoint(g, std::string(GetParam()) + "_bf16", keep);
  const Outputs o = g.config.variant == Variant::kFused ? run_all<FusedEngramLayer>(g, rounded_path)
                                                        : run_all<EngramLayer>(g, rounded_path);
  // Same weights, f32 accumulation: float rounding only.
  EXPECT_LT(relative_max_error(o.fast, o.on_rounded), 1e-5);
  EXPECT_LT(relative_max_error(o.fast, o.reference), 1e-5);
  // bf16 rounding of the weights is visible against the oracle, but small.
  EXPECT_LT(relative_max_error(o.fast, g.expected), 2e-2);
  EXPECT_GT(relative_max_error(o.fast, o.unrounded), 1e-6) << "the weights were not rounded";
  std::remove(rounded_path.c_str());
}

// The demo variant's conv history streams through decode states (the fused one has none).
class Bf16DemoStreamingTest : public ::testing::TestWithParam<const char*> {};

TEST_P(Bf16DemoStreamingTest, TokenByTokenEqualsWhole) {
  const LayerGolden g = load_layer_golden(GetParam());
  CheckpointOptions bf16{.prefix = "", .column_rows = g.primes};
  bf16.bf16_projection = true;
  const auto layer = EngramLayer::load(g.config, g.weights, bf16);
  const std::vector<float> whole = test::forward_whole(layer, g);
  const int64_t cols = g.config.num_columns(), w = g.width();
  EngramLayer::Workspace ws;
  std::vector<float> streamed(whole.size());
  for (int64_t b = 0; b < g.batch; ++b) {
    EngramDecodeState state = layer.make_state();
    EngramDecodeState* states[1] = {&state};
    for (int64_t t = 0; t < g.seq_len; ++t) {
      const int64_t token = b * g.seq_len + t;
      layer.forward(std::span<const int64_t>(g.hash_ids).subspan(token * cols, cols),
                    std::span<const float>(g.hidden).subspan(token * w, w), 1, 1,
                    std::span<float>(streamed).subspan(token * w, w), states, ws);
    }
  }
  EXPECT_LT(relative_max_error(streamed, whole), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Goldens, Bf16ProjectionTest,
                         ::testing::Values("demo_a", "demo_c", "fused_a", "fused_b"));
INSTANTIATE_TEST_SUITE_P(Goldens, Bf16DemoStreamingTest, ::testing::Values("demo_a", "demo_c"));

TEST(Bf16Projection, RefusesValuesBeyondBf16Range) {
  const LayerGolden g = load_layer_golden("demo_a");
  const std::string path = temp_path("bf16_range.safetensors");
  test::write_checkpoint_editing(g, path, "value_proj.weight", [](std::vector<float>& values) {
    values[5] = std::numeric_limits<float>::max();  // finite in f32, inf in bf16
  });
  CheckpointOptions bf16{.prefix = "", .column_rows = g.primes};
  bf16.bf16_projection = true;
  EXPECT_THAT(error_of([&] { EngramLayer::load(g.config, path, bf16); }),
              HasSubstr(path + ": tensor 'value_proj.weight' holds 3.40282e+38 at flat index 5, "
                               "beyond bf16's range"));
  // f32 storage takes it
  EXPECT_NO_THROW(EngramLayer::load(g.config, path, {.prefix = "", .column_rows = g.primes}));
  std::remove(path.c_str());
}

TEST(Bf16Projection, NeedsAFloatLayer) {
  const LayerGolden g = load_layer_golden("demo_a");
  CheckpointOptions bf16{.prefix = "", .column_rows = g.primes};
  bf16.bf16_projection = true;
  EXPECT_THAT(error_of([&] { EngramLayerT<double>::load(g.config, g.weights, bf16); }),
              HasSubstr("bf16_projection needs a float layer"));
}

}  // namespace
}  // namespace engram
