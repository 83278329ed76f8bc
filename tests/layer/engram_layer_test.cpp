// The demo Engram layer (EngramLayerT<float, DemoBlock>) beyond the properties every block shares
// (conformance_test.cpp): whole sequences against the oracle with column sizes from offsets or
// primes, prefixed whole-model checkpoints, BF16 weights, kernel size 1, error messages.
#include "engram/layer/engram_layer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "engram/detail/float16.hpp"
#include "layer/layer_golden.hpp"
#include "support/error_of.hpp"

namespace engram {
namespace {

using test::error_of;

using test::kOracleTolerance;
using test::LayerGolden;
using test::load_layer_golden;
using test::oracle_error;
using test::relative_max_error;
using test::temp_path;
using test::write_checkpoint;
using ::testing::HasSubstr;

constexpr double kChunkTolerance = 1e-5;

const char* const kDemoGoldens[] = {"demo_a", "demo_b", "demo_c", "demo_d"};

/// Runs the whole batch through `layer` in chunks whose lengths come from `next_chunk`.
template <class Layer, class NextChunk>
std::vector<float> run_chunked(const Layer& layer, const LayerGolden& g, NextChunk next_chunk) {
  const int64_t cols = layer.num_columns(), w = g.width(), B = g.batch, T = g.seq_len;
  std::vector<typename Layer::State> states;
  for (int64_t b = 0; b < B; ++b) states.push_back(layer.make_state());
  std::vector<typename Layer::State*> state_ptrs;
  for (auto& s : states) state_ptrs.push_back(&s);
  typename Layer::Workspace ws;
  std::vector<float> out(g.expected.size(), -1.0f);
  for (int64_t t0 = 0; t0 < T;) {
    const int64_t len = std::min(next_chunk(), T - t0);
    std::vector<int64_t> ids(B * len * cols);
    std::vector<float> hidden(B * len * w), chunk_out(B * len * w);
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(g.hash_ids.begin() + (b * T + t0) * cols, len * cols,
                  ids.begin() + b * len * cols);
      std::copy_n(g.hidden.begin() + (b * T + t0) * w, len * w, hidden.begin() + b * len * w);
    }
    layer.forward(ids, hidden, B, len, chunk_out, state_ptrs, ws);
    for (int64_t b = 0; b < B; ++b)
      std::copy_n(chunk_out.begin() + b * len * w, len * w, out.begin() + (b * T + t0) * w);
    t0 += len;
  }
  for (auto& s : states) EXPECT_EQ(s.position(), T);
  return out;
}

class EngramLayerGoldenTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    g_ = load_layer_golden(GetParam());
    ASSERT_EQ(g_.config.variant, Variant::kDemo);
  }
  EngramLayer load(const CheckpointOptions& options) const {
    return EngramLayer::load(g_.config, g_.weights, options);
  }
  CheckpointOptions with_primes() const { return {.prefix = "", .column_rows = g_.primes}; }
  LayerGolden g_;
};

TEST_P(EngramLayerGoldenTest, WholeSequencesMatchOracle) {
  SCOPED_TRACE(g_.name);
  for (const bool primes : {true, false}) {
    SCOPED_TRACE(primes ? "column_rows from primes" : "column_rows from offsets");
    const EngramLayer layer = load(primes ? with_primes() : CheckpointOptions{});
    EngramLayer::Workspace ws;
    std::vector<float> out(g_.expected.size(), -1.0f);
    layer.forward(g_.hash_ids, g_.hidden, g_.batch, g_.seq_len, out, ws);
    const double err = oracle_error(out, g_.expected);
    RecordProperty("relative_error_fast", std::to_string(err));
    EXPECT_LT(err, kOracleTolerance);
    // a second call on the same workspace gives the same bits
    std::vector<float> again(out.size());
    layer.forward(g_.hash_ids, g_.hidden, g_.batch, g_.seq_len, again, ws);
    EXPECT_EQ(out, again);
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, EngramLayerGoldenTest, ::testing::ValuesIn(kDemoGoldens),
                         [](const auto& info) { return std::string(info.param); });

// ------------------------------------------------------------------ checkpoints

TEST(EngramLayerCheckpoint, PrefixedWholeModelCheckpointGivesSameOutput) {
  const LayerGolden g = load_layer_golden("demo_a");
  const std::string path = temp_path("prefixed.safetensors");
  write_checkpoint(g, path, "layers.15.engram.");
  const auto layer =
      EngramLayer::load(g.config, path, {.prefix = "layers.15.engram.", .column_rows = g.primes});
  const auto plain =
      EngramLayer::load(g.config, g.weights, {.prefix = "", .column_rows = g.primes});
  EngramLayer::Workspace ws;
  std::vector<float> a(g.expected.size()), b(g.expected.size());
  layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, a, ws);
  plain.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, b, ws);
  EXPECT_EQ(a, b);
  EXPECT_THAT(error_of([&] { EngramLayer::load(g.config, path, {.prefix = "layers.14.engram."}); }),
              HasSubstr("missing tensor 'layers.14.engram.multi_head_embedding.embedding.weight'"));
  std::remove(path.c_str());
}

TEST(EngramLayerCheckpoint, TableIsViewedNotCopied) {
  const LayerGolden g = load_layer_golden("demo_a");
  const auto layer = EngramLayer::load(g.config, g.weights);
  const TensorView& table = g.weights->at("multi_head_embedding.embedding.weight");
  const auto& view = std::get<EmbeddingTableT<codec::F32>>(layer.weights().table);
  EXPECT_EQ(view.row_storage().data(), table.bytes.data());
  EXPECT_EQ(std::vector<int64_t>(view.column_rows().begin(), view.column_rows().end()), g.primes);
}

TEST(EngramLayerCheckpoint, Bf16WeightsLoadAndFastMatchesReference) {
  const LayerGolden g = load_layer_golden("demo_c");
  std::vector<std::vector<BFloat16>> storage;
  const std::string path = temp_path("bf16.safetensors");
  write_checkpoint(g, path, "", [&](std::vector<TensorWrite>& tensors) {
    storage.reserve(tensors.size());
    for (auto& t : tensors) {
      if (t.dtype != DType::kF32) continue;
      std::vector<float> values(t.bytes.size() / 4);
      std::memcpy(values.data(), t.bytes.data(), t.bytes.size());
      auto& converted = storage.emplace_back(values.size());
      for (size_t i = 0; i < values.size(); ++i) converted[i] = to_bfloat16(values[i]);
      t.dtype = DType::kBF16;
      t.bytes = std::as_bytes(std::span<const BFloat16>(converted));
    }
  });
  const auto layer = EngramLayer::load(g.config, path, {.prefix = "", .column_rows = g.primes});
  EXPECT_TRUE(std::holds_alternative<EmbeddingTableT<codec::BF16>>(layer.weights().table));
  EngramLayer::Workspace ws;
  std::vector<float> out(g.expected.size()), ref(g.expected.size());
  layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, out, ws);
  layer.forward_reference(g.hash_ids, g.hidden, g.batch, g.seq_len, ref);
  EXPECT_LT(relative_max_error(out, ref), kChunkTolerance);
  const double err = relative_max_error(out, g.expected);
  EXPECT_LT(err, 3e-2);  // bf16 weights: about 3 significant digits
  EXPECT_GT(err, 1e-5);  // and really rounded
  std::remove(path.c_str());
}

TEST(EngramLayerCheckpoint, KernelSizeOneHasNoHistory) {
  // kernel_size 1: the conv sees only the current step; streaming keeps no history rows
  LayerGolden g = load_layer_golden("demo_d");
  const TensorView& conv = g.weights->at("short_conv.conv.weight");  // [C, 1, 5]
  const auto taps = conv.copy_as<float>();
  const int64_t channels = conv.shape[0], k = conv.shape[2];
  std::vector<float> last(channels);
  for (int64_t c = 0; c < channels; ++c) last[c] = taps[c * k + k - 1];
  const std::string path = temp_path("kernel1.safetensors");
  write_checkpoint(g, path, "", [&](std::vector<TensorWrite>& tensors) {
    for (auto& t : tensors)
      if (t.name == "short_conv.conv.weight") {
        t.shape = {channels, 1, 1};
        t.bytes = std::as_bytes(std::span<const float>(last));
      }
  });
  g.config.kernel_size = 1;
  const auto layer = EngramLayer::load(g.config, path, {.prefix = "", .column_rows = g.primes});
  EXPECT_EQ(layer.make_state().history_rows(), 0);
  EngramLayer::Workspace ws;
  std::vector<float> whole(g.expected.size()), ref(g.expected.size());
  layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, whole, ws);
  layer.forward_reference(g.hash_ids, g.hidden, g.batch, g.seq_len, ref);
  EXPECT_LT(relative_max_error(whole, ref), kChunkTolerance);
  const auto chunked = run_chunked(layer, g, [] { return int64_t{3}; });
  EXPECT_LT(relative_max_error(chunked, whole), kChunkTolerance);
  std::remove(path.c_str());
}

TEST(EngramLayerCheckpoint, ErrorsNameTensorAndShapes) {
  const LayerGolden g = load_layer_golden("demo_a");
  const std::string path = temp_path("bad.safetensors");
  static const float kSmall[7] = {};
  auto replace = [&](const std::string& name, std::vector<int64_t> shape) {
    write_checkpoint(g, path, "", [&](std::vector<TensorWrite>& tensors) {
      for (auto& t : tensors)
        if (t.name == name) {
          t.shape = shape;
          int64_t n = 1;
          for (int64_t d : shape) n *= d;
          t.bytes = std::as_bytes(std::span<const float>(kSmall, n));
        }
    });
    return error_of([&] { EngramLayer::load(g.config, path); });
  };
  EXPECT_THAT(replace("key_projs.2.bias", {7}),
              HasSubstr("tensor 'key_projs.2.bias' has shape [7], expected [64]"));
  EXPECT_THAT(replace("norm2.3.weight", {1, 7}),
              HasSubstr("tensor 'norm2.3.weight' has shape [1, 7], expected [64]"));
  EXPECT_THAT(replace("short_conv.conv.weight", {7}),
              HasSubstr("tensor 'short_conv.conv.weight' has shape [7], expected [256, 1, 4]"));

  // offsets that disagree with the primes
  const auto loaded = EngramLayer::load(g.config, g.weights);  // fine without primes
  std::vector<int64_t> wrong = g.primes;
  wrong[1] += 1;
  EXPECT_THAT(error_of([&] {
                EngramLayer::load(g.config, g.weights, {.prefix = "", .column_rows = wrong});
              }),
              HasSubstr("tensor 'multi_head_embedding.offsets'[2] = "));
  // a table too small for the primes
  std::vector<int64_t> bigger = g.primes;
  bigger.back() += 1;
  EXPECT_THAT(error_of([&] {
                EngramLayer::load(g.config, g.weights, {.prefix = "", .column_rows = bigger});
              }),
              HasSubstr("rows, expected at least sum(column_rows) = "));
  // a config that does not match the checkpoint
  EngramConfig other = g.config;
  other.hidden_size = 32;
  EXPECT_THAT(error_of([&] { EngramLayer::load(other, g.weights); }),
              HasSubstr("tensor 'key_projs.0.weight' has shape [64, 128], expected [32, 128]"));
  other = g.config;
  other.variant = Variant::kFused;
  other.head_dim = 16;
  EXPECT_THAT(error_of([&] { EngramLayer::load(other, g.weights); }),
              HasSubstr("needs a demo-variant config"));
  std::remove(path.c_str());
}

TEST(EngramLayerForward, BadInputsAreRejectedWithClearMessages) {
  const LayerGolden g = load_layer_golden("demo_a");
  const auto layer =
      EngramLayer::load(g.config, g.weights, {.prefix = "", .column_rows = g.primes});
  EngramLayer::Workspace ws;
  std::vector<float> out(g.expected.size());
  std::vector<int64_t> ids = g.hash_ids;
  const int64_t cols = layer.num_columns();
  ids[(1 * g.seq_len + 3) * cols + 2] = g.primes[2];
  EXPECT_THAT(error_of([&] { layer.forward(ids, g.hidden, g.batch, g.seq_len, out, ws); }),
              HasSubstr("hash id " + std::to_string(g.primes[2]) +
                        " at sequence 1, position 3, column 2 is outside [0, " +
                        std::to_string(g.primes[2]) + ")"));
  ids = g.hash_ids;
  ids[5] = -1;
  EXPECT_THAT(error_of([&] { layer.forward(ids, g.hidden, g.batch, g.seq_len, out, ws); }),
              HasSubstr("hash id -1 at sequence 0, position 0, column 5"));
  EXPECT_THAT(
      error_of([&] { layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len - 1, out, ws); }),
      HasSubstr("hash_ids has"));
  std::vector<float> short_out(out.size() - 1);
  EXPECT_THAT(
      error_of([&] { layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, short_out, ws); }),
      HasSubstr("out has " + std::to_string(out.size() - 1) + " values, expected " +
                std::to_string(out.size())));
  // states: count and shape
  auto state = layer.make_state();
  EngramDecodeState* one[1] = {&state};
  EXPECT_THAT(
      error_of([&] { layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, out, one, ws); }),
      HasSubstr("1 states for a batch of 2 sequences"));
  EngramDecodeState wrong(3, 5);
  EngramDecodeState* two[2] = {&state, &wrong};
  EXPECT_THAT(
      error_of([&] { layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, out, two, ws); }),
      HasSubstr("state 1 has a conv history of [3, 5], expected [9, 256]"));
  // nothing was written by the failed calls' kernels, and states were not advanced
  EXPECT_EQ(state.position(), 0);
}

TEST(EngramLayerForward, EmptyBatchAndResetState) {
  const LayerGolden g = load_layer_golden("demo_b");
  const auto layer = EngramLayer::load(g.config, g.weights);
  EngramLayer::Workspace ws;
  std::vector<float> none;
  layer.forward(std::span<const int64_t>(), none, 0, 5, none, ws);
  layer.forward(std::span<const int64_t>(), none, 3, 0, none, ws);

  // a reset state replays the sequence start exactly
  const int64_t cols = layer.num_columns(), w = g.width();
  auto state = layer.make_state();
  EngramDecodeState* ptr = &state;
  std::vector<float> first(4 * w), second(4 * w);
  const std::span<const int64_t> ids(g.hash_ids.data(), 4 * cols);
  const std::span<const float> hidden(g.hidden.data(), 4 * w);
  layer.forward(ids, hidden, 1, 4, first, {&ptr, 1}, ws);
  EXPECT_EQ(state.position(), 4);
  state.reset();
  EXPECT_EQ(state.position(), 0);
  layer.forward(ids, hidden, 1, 4, second, {&ptr, 1}, ws);
  EXPECT_EQ(first, second);
}

// ------------------------------------------------------------------ the block's chunked step

/// The demo step as plain passes over all tokens, through the same parts DemoBlock::Step::forward
/// uses (the gate with the bias, the value and its norms, the gated conv row): whichever threads
/// and per-thread rings the step runs on, it must give the same bits.
std::vector<float> plain_step(const EngramLayer& layer, const std::vector<float>& kv,
                              const BlockBatch<float>& b) {
  const int64_t d = layer.hidden_size(), hc = layer.hc_mult(), c = hc * d, n = (hc + 1) * d;
  const auto& bias = layer.weights().kv_bias;
  const auto& conv = layer.short_conv();
  std::vector<float> alpha(static_cast<size_t>(b.tokens * hc)), value(static_cast<size_t>(d));
  for (int64_t t = 0; t < b.tokens; ++t) {
    if (b.dead(t)) continue;  // alpha = 0
    EXPECT_TRUE(layer.gate().forward(kv.data() + t * n, bias.data(), b.hidden + t * c,
                                     alpha.data() + t * hc));
  }
  std::vector<float> values(static_cast<size_t>(b.tokens * d)), normed(b.tokens * c);
  for (int64_t t = 0; t < b.tokens; ++t) {
    if (b.dead(t)) continue;  // normed = 0
    for (int64_t j = 0; j < d; ++j) values[t * d + j] = kv[t * n + c + j] + bias[c + j];
    conv.normalize_scaled(values.data() + t * d, alpha.data() + t * hc, normed.data() + t * c);
  }
  std::vector<float> y(static_cast<size_t>(b.tokens * c));
  std::vector<const float*> sources(static_cast<size_t>(conv.kernel_size()));
  for (int64_t t = 0; t < b.tokens; ++t) {
    const int64_t p = t - b.segment_start[b.token_segment[t]];
    for (int64_t tap = 0; tap < conv.kernel_size(); ++tap) {
      const int64_t q = p - (conv.kernel_size() - 1 - tap) * conv.dilation();
      sources[tap] = q >= 0 ? normed.data() + (t - p + q) * c : nullptr;
    }
    conv.convolve_row_gated(sources.data(), b.dead(t) ? nullptr : values.data() + t * d,
                            alpha.data() + t * hc, y.data() + t * c);
  }
  return y;
}

TEST(EngramLayerStep, ThreadedStepEqualsPlainPassesBitwiseForAnyThreadCount) {
  for (const char* name : kDemoGoldens) {
    SCOPED_TRACE(name);
    const LayerGolden g = load_layer_golden(name);
    const EngramLayer layer = EngramLayer::load(g.config, g.weights);
    const int64_t c = layer.hc_mult() * layer.hidden_size(), n = c + layer.hidden_size();
    const std::vector<int64_t> lengths = {61, 3, 90, 17};  // workers' ranges start mid-sequence
    std::vector<int64_t> token_segment, segment_start;
    for (int64_t s = 0; s < static_cast<int64_t>(lengths.size()); ++s) {
      segment_start.push_back(static_cast<int64_t>(token_segment.size()));
      token_segment.insert(token_segment.end(), lengths[s], s);
    }
    const int64_t tokens = static_cast<int64_t>(token_segment.size());
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> kv(static_cast<size_t>(tokens * n)), hidden(static_cast<size_t>(tokens * c));
    for (auto& v : kv) v = normal(rng);
    for (auto& v : hidden) v = normal(rng);
    std::vector<uint8_t> live(static_cast<size_t>(tokens), 1);
    for (int64_t t = 5; t < tokens; t += 13) live[t] = 0;
    for (const bool with_dead : {false, true}) {
      for (const bool in_place : {false, true}) {  // out == hidden, as a caller may pass
        std::vector<float> expected;
        for (const int threads : {1, 2, 3, 5}) {
          SCOPED_TRACE(testing::Message() << "dead tokens " << with_dead << ", in place "
                                          << in_place << ", threads " << threads);
          Eigen::setNbThreads(threads);
          std::vector<float> kv_copy = kv, out(hidden.size(), -1.0f), in = hidden;
          std::vector<float> scratch(static_cast<size_t>(layer.step().scratch_size(tokens)));
          float* out_ptr = in_place ? in.data() : out.data();
          const BlockBatch<float> b{kv_copy.data(),
                                    in.data(),
                                    out_ptr,
                                    tokens,
                                    with_dead ? live.data() : nullptr,
                                    token_segment.data(),
                                    segment_start.data(),
                                    static_cast<int64_t>(lengths.size()),
                                    {},
                                    scratch.data()};
          if (expected.empty()) expected = plain_step(layer, kv, b);
          EXPECT_EQ(layer.step().forward(b), -1);
          EXPECT_TRUE(kv_copy == kv);  // kv is only read
          const std::vector<float> got(out_ptr, out_ptr + tokens * c);
          EXPECT_TRUE(got == expected);
        }
        Eigen::setNbThreads(0);
      }
    }
  }
}

}  // namespace
}  // namespace engram
