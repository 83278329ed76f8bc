// Non-finite values that would poison a layer's output are reported, never propagated silently:
// hidden states (named by sequence, position, branch, channel), table rows (named by row, column,
// hash id and the token that used them) and checkpoint weights (named by tensor and index). A
// failed call writes nothing to `out` and advances no state.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "engram/layer/engram_layer.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "layer/layer_golden.hpp"
#include "support/error_of.hpp"

namespace engram {
namespace {

using test::error_of;

using test::LayerGolden;
using test::load_layer_golden;
using test::temp_path;
using test::write_checkpoint;
using ::testing::HasSubstr;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

/// The flat index of hidden[b, t, branch, channel].
int64_t hidden_index(const LayerGolden& g, int64_t b, int64_t t, int64_t branch, int64_t channel) {
  return ((b * g.seq_len + t) * g.config.hc_mult + branch) * g.config.hidden_size + channel;
}

TEST(NonFinite, HiddenStateIsReportedWithItsPosition) {
  const LayerGolden g = load_layer_golden("demo_a");
  const auto layer =
      EngramLayer::load(g.config, g.weights, {.prefix = "", .column_rows = g.primes});
  EngramLayer::Workspace ws;
  for (const float bad : {kNaN, kInf, -kInf}) {
    SCOPED_TRACE(bad);
    std::vector<float> hidden = g.hidden;
    hidden[hidden_index(g, 1, 3, 2, 5)] = bad;
    hidden[hidden_index(g, 1, 4, 0, 0)] = bad;  // a later one is not the one named
    std::vector<float> out(g.expected.size(), -7.0f);
    EXPECT_THAT(error_of([&] { layer.forward(g.hash_ids, hidden, g.batch, g.seq_len, out, ws); }),
                HasSubstr("hidden state at sequence 1, position 3, branch 2, channel 5 is "));
    EXPECT_EQ(out, std::vector<float>(out.size(), -7.0f)) << "a failed call wrote its output";
    // streaming: the states are not advanced by the failed chunk
    std::vector<EngramDecodeState> states{layer.make_state(), layer.make_state()};
    EngramDecodeState* ptrs[2] = {&states[0], &states[1]};
    EXPECT_THAT(
        error_of([&] { layer.forward(g.hash_ids, hidden, g.batch, g.seq_len, out, ptrs, ws); }),
        HasSubstr("sequence 1, position 3"));
    EXPECT_EQ(states[0].position(), 0);
    EXPECT_EQ(states[1].position(), 0);
  }
  // the same layer still computes finite inputs correctly afterwards
  std::vector<float> out(g.expected.size());
  layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, out, ws);
  EXPECT_LT(test::oracle_error(out, g.expected), test::kOracleTolerance);
}

TEST(NonFinite, DemoLayerChecksLiveTokensOnlyAndTakesHugeFiniteValues) {
  // The demo block checks hidden states in its gate (the sum of squares, then the row itself when
  // that sum is not finite): a value whose square overflows is finite and goes through, a NaN in
  // a dead token is not the layer's input.
  const LayerGolden g = load_layer_golden("demo_a");
  const auto layer =
      EngramLayer::load(g.config, g.weights, {.prefix = "", .column_rows = g.primes});
  EngramLayer::Workspace ws;
  std::vector<float> hidden = g.hidden;
  hidden[hidden_index(g, 0, 2, 1, 4)] = 3e20f;  // its square is beyond float's range
  std::vector<float> out(g.expected.size());
  EXPECT_NO_THROW(layer.forward(g.hash_ids, hidden, g.batch, g.seq_len, out, ws));

  hidden = g.hidden;
  const int64_t dead = g.seq_len + 2;  // sequence 1, position 2
  hidden[dead * g.width() + 1] = kNaN;
  std::vector<uint8_t> live(g.tokens(), 1);
  EXPECT_THAT(
      error_of([&] { layer.forward(g.hash_ids, hidden, g.batch, g.seq_len, out, ws, live); }),
      HasSubstr("hidden state at sequence 1, position 2, branch 0, channel 1 is nan"));
  live[dead] = 0;
  std::vector<float> expected(out.size());
  layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, expected, ws, live);
  layer.forward(g.hash_ids, hidden, g.batch, g.seq_len, out, ws, live);
  EXPECT_TRUE(out == expected) << "a dead token's hidden state changed the output";
}

/// The first token (flat index) that reads global row `row` through column `c`, or -1.
int64_t first_user(const LayerGolden& g, int64_t c, int64_t id) {
  const int64_t cols = g.config.num_columns();
  for (int64_t t = 0; t < g.tokens(); ++t)
    if (g.hash_ids[t * cols + c] == id) return t;
  return -1;
}

/// demo_a with table row `row` (global index) holding `bad` at value `at`, written to `path`.
void write_poisoned_table(const LayerGolden& g, const std::string& path, int64_t row, int64_t at,
                          float bad) {
  const int64_t r = g.config.row_dim();
  std::vector<float> table;
  write_checkpoint(g, path, "", [&](std::vector<TensorWrite>& tensors) {
    for (auto& t : tensors)
      if (t.name == "multi_head_embedding.embedding.weight") {
        table.resize(t.bytes.size() / sizeof(float));
        std::memcpy(table.data(), t.bytes.data(), t.bytes.size());
        table[row * r + at] = bad;
        t.bytes = std::as_bytes(std::span<const float>(table));
      }
  });
}

TEST(NonFinite, TableRowIsReportedWithRowColumnAndToken) {
  const LayerGolden g = load_layer_golden("demo_a");
  const int64_t cols = g.config.num_columns(), r = g.config.row_dim();
  // poison the row the last token reads in column 3
  const int64_t c = 3, id = g.hash_ids[(g.tokens() - 1) * cols + c];
  int64_t row = id;
  for (int64_t i = 0; i < c; ++i) row += g.primes[i];
  const int64_t user = first_user(g, c, id);
  const std::string path = temp_path("nan_row.safetensors");
  write_poisoned_table(g, path, row, r / 2, kNaN);
  const auto layer = EngramLayer::load(g.config, path, {.prefix = "", .column_rows = g.primes});
  EngramLayer::Workspace ws;
  std::vector<float> out(g.expected.size(), -7.0f);
  EXPECT_THAT(error_of([&] { layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, out, ws); }),
              HasSubstr("row " + std::to_string(row) + " of table '" + path +
                        ": multi_head_embedding.embedding.weight' (column 3, hash id " +
                        std::to_string(id) + ") holds a non-finite value; used at sequence " +
                        std::to_string(user / g.seq_len) + ", position " +
                        std::to_string(user % g.seq_len)));
  EXPECT_EQ(out, std::vector<float>(out.size(), -7.0f));
  // tokens that never read the row are unaffected: the first sequence alone, if it avoids it
  if (user >= g.seq_len) {
    std::vector<float> first(g.seq_len * g.width());
    layer.forward(std::span<const int64_t>(g.hash_ids).first(g.seq_len * cols),
                  std::span<const float>(g.hidden).first(first.size()), 1, g.seq_len, first, ws);
    EXPECT_LT(test::oracle_error(std::span<const float>(first),
                                 std::span<const float>(g.expected).first(first.size())),
              test::kOracleTolerance);
  }
  std::remove(path.c_str());
}

TEST(NonFinite, TableRowIsReportedForTheFirstLiveUserWhicheverThreadGathersIt) {
  // The gather checks its rows block by block on each thread and a thread stops at its first bad
  // row: the error must still name the first live token that reads one, on 1 or 2 threads, when
  // both halves of the call read it or (the first half dead) only the second.
  const LayerGolden g = load_layer_golden("demo_a");
  const int64_t cols = g.config.num_columns();
  const int64_t c = 3, id = g.hash_ids[(g.tokens() - 1) * cols + c];
  int64_t row = id;
  for (int64_t i = 0; i < c; ++i) row += g.primes[i];
  const int64_t user = first_user(g, c, id);
  const std::string path = temp_path("nan_row_tiled.safetensors");
  write_poisoned_table(g, path, row, 0, kInf);
  const auto layer = EngramLayer::load(g.config, path, {.prefix = "", .column_rows = g.primes});
  constexpr int64_t kTiles = 40;  // enough tokens for two gather threads
  std::vector<int64_t> ids;
  std::vector<float> hidden;
  for (int64_t k = 0; k < kTiles; ++k) {
    ids.insert(ids.end(), g.hash_ids.begin(), g.hash_ids.end());
    hidden.insert(hidden.end(), g.hidden.begin(), g.hidden.end());
  }
  const int64_t batch = g.batch * kTiles, tokens = g.tokens() * kTiles;
  std::vector<float> out(hidden.size(), -7.0f);
  EngramLayer::Workspace ws;
  for (const int threads : {1, 2}) {
    Eigen::setNbThreads(threads);
    for (const int64_t dead_tiles : {int64_t{0}, kTiles / 2 + 1}) {
      SCOPED_TRACE(testing::Message() << threads << " threads, " << dead_tiles << " dead tiles");
      std::vector<uint8_t> live(static_cast<size_t>(tokens), 1);
      std::fill_n(live.begin(), dead_tiles * g.tokens(), uint8_t{0});
      const int64_t first = dead_tiles * g.tokens() + user;
      EXPECT_THAT(error_of([&] { layer.forward(ids, hidden, batch, g.seq_len, out, ws, live); }),
                  HasSubstr("used at sequence " + std::to_string(first / g.seq_len) +
                            ", position " + std::to_string(first % g.seq_len)));
      EXPECT_EQ(out, std::vector<float>(out.size(), -7.0f));
    }
  }
  Eigen::setNbThreads(0);
  std::remove(path.c_str());
}

TEST(NonFinite, WeightsAreCheckedWhenLoading) {
  const LayerGolden g = load_layer_golden("demo_a");
  const std::string path = temp_path("inf_weight.safetensors");
  test::write_checkpoint_editing(g, path, "key_projs.1.weight",
                                 [](std::vector<float>& values) { values[37] = -kInf; });
  EXPECT_THAT(error_of([&] { EngramLayer::load(g.config, path); }),
              HasSubstr(path + ": tensor 'key_projs.1.weight' holds a non-finite value (-inf) at "
                               "flat index 37"));
  std::remove(path.c_str());
}

TEST(NonFinite, FusedLayerReportsLiveTokensAndPassesDeadOnesThrough) {
  const LayerGolden g = load_layer_golden("fused_a");
  const auto layer =
      FusedEngramLayer::load(g.config, g.weights, {.prefix = "", .column_rows = g.primes});
  FusedEngramLayer::Workspace ws;
  std::vector<float> hidden = g.hidden;
  const int64_t dead = g.seq_len + 1;  // sequence 1, position 1
  hidden[dead * g.width() + 3] = kNaN;
  std::vector<uint8_t> live(g.tokens(), 1);
  std::vector<float> out(g.expected.size());
  EXPECT_THAT(
      error_of([&] { layer.forward(g.hash_ids, hidden, g.batch, g.seq_len, out, ws, live); }),
      HasSubstr("hidden state at sequence 1, position 1, branch 0, channel 3 is nan"));
  // the same NaN in a dead token is not the layer's input: it passes through untouched
  live[dead] = 0;
  layer.forward(g.hash_ids, hidden, g.batch, g.seq_len, out, ws, live);
  EXPECT_TRUE(std::isnan(out[dead * g.width() + 3]));
  for (int64_t t = 0; t < g.tokens(); ++t) {
    if (t == dead) continue;
    for (int64_t j = 0; j < g.width(); ++j)
      ASSERT_TRUE(std::isfinite(out[t * g.width() + j])) << "token " << t << " value " << j;
  }
}

TEST(NonFinite, Fp8NanCodeInTheTableIsReported) {
  const LayerGolden g = load_layer_golden("fused_a");
  const int64_t r = g.config.row_dim();
  const int64_t c = 0, id = g.hash_ids[c];  // the row token 0 reads in column 0
  const std::string path = temp_path("fp8_nan.safetensors");
  std::vector<std::byte> table;
  write_checkpoint(g, path, "", [&](std::vector<TensorWrite>& tensors) {
    for (auto& t : tensors)
      if (t.name == "embed.weight") {
        table.assign(t.bytes.begin(), t.bytes.end());
        table[id * r + 1] = std::byte{0x7f};  // E4M3: S.1111.111 is NaN
        t.bytes = table;
      }
  });
  const auto layer =
      FusedEngramLayer::load(g.config, path, {.prefix = "", .column_rows = g.primes});
  FusedEngramLayer::Workspace ws;
  std::vector<float> out(g.expected.size());
  EXPECT_THAT(error_of([&] { layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, out, ws); }),
              HasSubstr("row " + std::to_string(id) + " of table '" + path +
                        ": embed.weight' (column 0, hash id " + std::to_string(id) +
                        ") holds a non-finite value; used at sequence 0, position 0"));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace engram
