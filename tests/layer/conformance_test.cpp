// LayerConformance: every block of EngramLayerT (DemoBlock, V41Block) in float and double through
// the properties the layer promises, against the oracle goldens in tests/data/layer/: whole ==
// oracle and == forward_reference, chunked == whole, in place == separate output, thread counts
// 1 and 2, ragged == each sequence alone, rollback == the accepted tokens alone, dead tokens, and
// no allocation in steady state. Bitwise where the projection computes every row on its own (the
// AVX-512 panel kernel: float), else to float rounding.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "engram/layer/engram_layer.hpp"
#include "layer/layer_golden.hpp"
#include "support/allocation_counter.hpp"
#include "support/error_of.hpp"

namespace engram {
namespace {

using test::error_of;
using test::kOracleTolerance;
using test::LayerGolden;
using test::load_layer_golden;
using test::oracle_error;
using test::relative_max_error;
using ::testing::HasSubstr;

template <class ScalarT, class BlockT>
struct LayerCase {
  using Scalar = ScalarT;
  using Block = BlockT;
  using Layer = EngramLayerT<Scalar, Block>;
  static constexpr bool kDemo = std::is_same_v<Block, DemoBlock>;
  static constexpr bool kRowExact = detail::kHasPanelKernel<Scalar>;
  /// fast path vs forward_reference, chunked vs whole where not bitwise.
  static constexpr double kFastTolerance = std::is_same_v<Scalar, float> ? 1e-5 : 1e-12;
  static std::vector<const char*> goldens() {
    if constexpr (kDemo) return {"demo_a", "demo_b", "demo_c", "demo_d"};
    return {"fused_a", "fused_b", "fused_c"};
  }
};

template <class Case>
class LayerConformance : public ::testing::Test {
 protected:
  using Scalar = typename Case::Scalar;
  using Layer = typename Case::Layer;
  using State = typename Layer::State;
  using Out = std::vector<Scalar>;

  /// Runs check(golden, layer, hidden as Scalar) for every golden of the block.
  template <class Check>
  void for_each_golden(const Check& check) {
    for (const char* name : Case::goldens()) {
      SCOPED_TRACE(name);
      const LayerGolden g = load_layer_golden(name);
      const Layer layer = test::load_with_hasher<Layer>(g, g.layer_id);
      check(g, layer, Out(g.hidden.begin(), g.hidden.end()));
    }
  }

  static void expect_same(const Out& actual, const Out& expected) {
    ASSERT_EQ(actual.size(), expected.size());
    if (actual.empty()) return;
    if (Case::kRowExact)
      EXPECT_EQ(0, std::memcmp(actual.data(), expected.data(), actual.size() * sizeof(Scalar)));
    else
      EXPECT_LT(relative_max_error(actual, expected), Case::kFastTolerance);
  }

  static Out whole(const Layer& layer, const LayerGolden& g, const Out& hidden,
                   std::span<const uint8_t> live = {}) {
    typename Layer::Workspace ws;
    Out out(hidden.size(), Scalar(-1));
    layer.forward(g.hash_ids, hidden, g.batch, g.seq_len, out, ws, live);
    return out;
  }

  /// The batch in chunks of next_chunk() tokens per sequence, one state each (hash-id front end).
  template <class NextChunk>
  static Out chunked(const Layer& layer, const LayerGolden& g, const Out& hidden,
                     NextChunk next_chunk) {
    const int64_t cols = layer.num_columns(), w = g.width(), B = g.batch, T = g.seq_len;
    std::vector<State> states;
    for (int64_t b = 0; b < B; ++b) states.push_back(layer.make_state());
    std::vector<State*> ptrs;
    for (auto& s : states) ptrs.push_back(&s);
    typename Layer::Workspace ws;
    Out out(hidden.size(), Scalar(-1));
    for (int64_t t0 = 0; t0 < T;) {
      const int64_t len = std::min(next_chunk(), T - t0);
      std::vector<int64_t> ids(B * len * cols);
      Out h(B * len * w), o(B * len * w);
      for (int64_t b = 0; b < B; ++b) {
        std::copy_n(g.hash_ids.begin() + (b * T + t0) * cols, len * cols,
                    ids.begin() + b * len * cols);
        std::copy_n(hidden.begin() + (b * T + t0) * w, len * w, h.begin() + b * len * w);
      }
      layer.forward(ids, h, B, len, o, ptrs, ws);
      for (int64_t b = 0; b < B; ++b)
        std::copy_n(o.begin() + b * len * w, len * w, out.begin() + (b * T + t0) * w);
      t0 += len;
    }
    for (const auto& s : states) EXPECT_EQ(s.position(), T);
    return out;
  }
};

using Cases = ::testing::Types<LayerCase<float, DemoBlock>, LayerCase<double, DemoBlock>,
                               LayerCase<float, V41Block>, LayerCase<double, V41Block>>;

struct CaseNames {
  template <class Case>
  static std::string GetName(int) {
    return std::string(Case::kDemo ? "Demo" : "V41") +
           (std::is_same_v<typename Case::Scalar, float> ? "Float" : "Double");
  }
};
TYPED_TEST_SUITE(LayerConformance, Cases, CaseNames);

TYPED_TEST(LayerConformance, WholeAndReferenceMatchOracle) {
  using Out = typename TestFixture::Out;
  this->for_each_golden([&](const LayerGolden& g, const auto& layer, const Out& hidden) {
    const Out out = this->whole(layer, g, hidden);
    Out ref(out.size());
    layer.forward_reference(g.hash_ids, hidden, g.batch, g.seq_len, ref);
    EXPECT_LT(oracle_error(out, g.expected), kOracleTolerance);
    EXPECT_LT(oracle_error(ref, g.expected), kOracleTolerance);
    EXPECT_LT(relative_max_error(out, ref), TypeParam::kFastTolerance);
    // the token-id front end hashes the golden's ids
    typename TestFixture::Layer::Workspace ws;
    Out from_tokens(out.size());
    layer.forward_tokens(g.input_ids, hidden, g.batch, g.seq_len, from_tokens, ws);
    EXPECT_EQ(from_tokens, out);
  });
}

TYPED_TEST(LayerConformance, GatherThenForwardMemoryEqualsForward) {
  using Out = typename TestFixture::Out;
  this->for_each_golden([&](const LayerGolden& g, const auto& layer, const Out& hidden) {
    typename TestFixture::Layer::Workspace ws;
    Out memory(static_cast<size_t>(g.tokens() * layer.config().memory_dim()));
    layer.gather(g.hash_ids, g.batch, g.seq_len, memory, ws);
    Out out(hidden.size());
    layer.forward_memory(memory, hidden, g.batch, g.seq_len, out, ws);
    EXPECT_EQ(out, this->whole(layer, g, hidden));  // forward's own gather, bit for bit
    std::vector<int64_t> bad = g.hash_ids;
    bad[1] = -1;
    EXPECT_THROW(layer.gather(bad, g.batch, g.seq_len, memory, ws), Error);
    Out small(memory.size() - 1);
    EXPECT_THROW(layer.gather(g.hash_ids, g.batch, g.seq_len, small, ws), Error);
  });
}

TYPED_TEST(LayerConformance, ChunkedEqualsWhole) {
  using Out = typename TestFixture::Out;
  this->for_each_golden([&](const LayerGolden& g, const auto& layer, const Out& hidden) {
    const Out whole = this->whole(layer, g, hidden);
    for (const int64_t chunk : {1, 7, 16}) {
      SCOPED_TRACE("chunk " + std::to_string(chunk));
      this->expect_same(this->chunked(layer, g, hidden, [&] { return chunk; }), whole);
    }
    std::mt19937 rng(42);
    SCOPED_TRACE("random chunks");
    this->expect_same(this->chunked(layer, g, hidden, [&] { return int64_t(1 + rng() % 11); }),
                      whole);
  });
}

TYPED_TEST(LayerConformance, InPlaceEqualsSeparateOutput) {
  using Out = typename TestFixture::Out;
  this->for_each_golden([&](const LayerGolden& g, const auto& layer, const Out& hidden) {
    typename TestFixture::Layer::Workspace ws;
    std::vector<uint8_t> live(g.tokens());
    for (int64_t t = 0; t < g.tokens(); ++t) live[t] = t % 4 == 2 ? 0 : 1;
    for (const bool masked : {false, true}) {
      SCOPED_TRACE(masked ? "with dead tokens" : "all live");
      const auto l = masked ? std::span<const uint8_t>(live) : std::span<const uint8_t>();
      const Out out = this->whole(layer, g, hidden, l);
      Out in_place = hidden;
      layer.forward(g.hash_ids, in_place, g.batch, g.seq_len, in_place, ws, l);
      EXPECT_EQ(in_place, out);
      in_place = hidden;  // the token-id front end too
      layer.forward_tokens(g.input_ids, in_place, g.batch, g.seq_len, in_place, ws, l);
      Out separate(out.size());
      layer.forward_tokens(g.input_ids, hidden, g.batch, g.seq_len, separate, ws, l);
      EXPECT_EQ(in_place, separate);
    }
  });
}

TYPED_TEST(LayerConformance, OneAndTwoThreadsAgree) {
  using Out = typename TestFixture::Out;
  this->for_each_golden([&](const LayerGolden& g, const auto& layer, const Out& hidden) {
    const int saved = Eigen::nbThreads();
    std::vector<Out> outs;
    for (const int threads : {1, 2}) {
      Eigen::setNbThreads(threads);
      outs.push_back(this->whole(layer, g, hidden));
    }
    Eigen::setNbThreads(saved);
    this->expect_same(outs[1], outs[0]);
  });
}

TYPED_TEST(LayerConformance, RaggedEqualsEachSequenceAlone) {
  using Scalar = typename TestFixture::Scalar;
  using Out = typename TestFixture::Out;
  using State = typename TestFixture::State;
  this->for_each_golden([&](const LayerGolden& g, const auto& layer, const Out& hidden) {
    const int64_t cols = layer.num_columns(), w = g.width(), T = g.seq_len;
    typename TestFixture::Layer::Workspace ws;
    // sequences of lengths 0, 1, T / 2 and T cut from the golden's first row, each with a state
    const std::vector<int64_t> lengths = {T / 2, 0, 1, T};
    std::vector<int64_t> ids, tokens;
    Out h;
    for (const int64_t len : lengths) {
      ids.insert(ids.end(), g.hash_ids.begin(), g.hash_ids.begin() + len * cols);
      tokens.insert(tokens.end(), g.input_ids.begin(), g.input_ids.begin() + len);
      h.insert(h.end(), hidden.begin(), hidden.begin() + len * w);
    }
    std::vector<State> states, alone_states;
    std::vector<State*> ptrs;
    for (size_t s = 0; s < lengths.size(); ++s) {
      states.push_back(layer.make_state());
      alone_states.push_back(layer.make_state());
    }
    for (auto& s : states) ptrs.push_back(&s);
    for (const bool from_tokens : {false, true}) {
      SCOPED_TRACE(from_tokens ? "token ids" : "hash ids");
      Out out(h.size(), Scalar(-1));
      if (from_tokens)
        layer.forward_tokens_ragged(tokens, h, lengths, out, ptrs, ws);
      else
        layer.forward_ragged(ids, h, lengths, out, ptrs, ws);
      for (size_t s = 0, at = 0; s < lengths.size(); at += lengths[s++]) {
        SCOPED_TRACE("sequence " + std::to_string(s));
        const auto len = static_cast<size_t>(lengths[s]);
        State* alone = &alone_states[s];
        Out o(len * w);
        if (from_tokens)
          layer.forward_tokens(std::span<const int64_t>(tokens).subspan(at, len),
                               std::span<const Scalar>(h).subspan(at * w, len * w), 1, lengths[s],
                               o, {&alone, 1}, ws);
        else
          layer.forward(std::span<const int64_t>(ids).subspan(at * cols, len * cols),
                        std::span<const Scalar>(h).subspan(at * w, len * w), 1, lengths[s], o,
                        {&alone, 1}, ws);
        this->expect_same(Out(out.begin() + at * w, out.begin() + (at + len) * w), o);
        EXPECT_EQ(states[s].position(), alone->position());
      }
    }
  });
}

TYPED_TEST(LayerConformance, RollbackEqualsAcceptedAlone) {
  using Scalar = typename TestFixture::Scalar;
  using Out = typename TestFixture::Out;
  using State = typename TestFixture::State;
  this->for_each_golden([&](const LayerGolden& g, const auto& layer, const Out& hidden) {
    const int64_t w = g.width(), T = std::min<int64_t>(g.seq_len, 12), k = 4;
    ASSERT_GE(T, 3 + k);
    typename TestFixture::Layer::Workspace ws;
    auto feed = [&](State& state, int64_t first, int64_t count, bool wrong) {
      std::vector<int64_t> tokens(g.input_ids.begin() + first, g.input_ids.begin() + first + count);
      Out h(hidden.begin() + first * w, hidden.begin() + (first + count) * w), o(h.size());
      if (wrong) {
        for (auto& t : tokens) t = (t * 7 + 13) % static_cast<int64_t>(test::dsv3_lookup().size());
        for (auto& x : h) x = Scalar(0.25) - Scalar(0.5) * x;
      }
      State* ptr = &state;
      layer.forward_tokens(tokens, h, 1, count, o, {&ptr, 1}, ws);
      return o;
    };
    for (int64_t accepted = 0; accepted <= k; ++accepted) {
      SCOPED_TRACE("accepted " + std::to_string(accepted));
      State spec = layer.make_state(k), plain = layer.make_state();
      feed(spec, 0, 3, false);
      feed(plain, 0, 3, false);
      Out drafts = feed(spec, 3, accepted, false);  // the accepted drafts, then wrong ones
      feed(spec, 3 + accepted, k - accepted, true);
      spec.rollback(k - accepted);
      this->expect_same(drafts, feed(plain, 3, accepted, false));
      EXPECT_EQ(spec.position(), plain.position());
      EXPECT_EQ(spec.hash_state(), plain.hash_state());
      const int64_t next = 3 + accepted;
      this->expect_same(feed(spec, next, T - next, false), feed(plain, next, T - next, false));
    }
  });
}

TYPED_TEST(LayerConformance, DeadTokensAreNotReadAndShutTheGate) {
  using Out = typename TestFixture::Out;
  this->for_each_golden([&](const LayerGolden& g, const auto& layer, const Out& hidden) {
    const int64_t cols = layer.num_columns(), w = g.width(), tokens = g.tokens();
    std::vector<uint8_t> live(tokens);
    std::vector<int64_t> ids = g.hash_ids;
    for (int64_t t = 0; t < tokens; ++t) {
      live[t] = (t % 3 == 1) ? 0 : 1 + t % 2;  // any nonzero value is live
      if (!live[t]) std::fill_n(ids.begin() + t * cols, cols, int64_t{-5});  // never read
    }
    typename TestFixture::Layer::Workspace ws;
    Out out(hidden.size()), ref(hidden.size());
    layer.forward(ids, hidden, g.batch, g.seq_len, out, ws, live);
    layer.forward_reference(ids, hidden, g.batch, g.seq_len, ref, live);
    EXPECT_LT(relative_max_error(out, ref), TypeParam::kFastTolerance);
    if constexpr (!TypeParam::kDemo) {  // residual included: a shut gate passes hidden through
      for (int64_t t = 0; t < tokens; ++t) {
        if (!live[t]) {
          EXPECT_TRUE(
              std::equal(out.begin() + t * w, out.begin() + (t + 1) * w, hidden.begin() + t * w))
              << "token " << t;
        }
      }
    }
    // an all-live mask is the unmasked forward
    const std::vector<uint8_t> all_live(tokens, 1);
    EXPECT_EQ(this->whole(layer, g, hidden, all_live), this->whole(layer, g, hidden));
    // invalid ids of live tokens are still reported
    ids = g.hash_ids;
    ids[(tokens - 1) * cols] = -5;
    live.assign(tokens, 1);
    live[0] = 0;
    EXPECT_THAT(error_of([&] { layer.forward(ids, hidden, g.batch, g.seq_len, out, ws, live); }),
                HasSubstr("hash id -5 at sequence " + std::to_string(g.batch - 1) + ", position " +
                          std::to_string(g.seq_len - 1) + ", column 0"));
  });
}

TYPED_TEST(LayerConformance, SteadyStateDoesNotAllocate) {
  using Scalar = typename TestFixture::Scalar;
  using Out = typename TestFixture::Out;
  using State = typename TestFixture::State;
  this->for_each_golden([&](const LayerGolden& g, const auto& layer, const Out& hidden) {
    typename TestFixture::Layer::Workspace ws;
    layer.reserve(ws, g.tokens(), g.batch);
    Out out(hidden.size());
    State state = layer.make_state(2), token_state = layer.make_state(2);
    State *ptr = &state, *token_ptr = &token_state;
    const int64_t cols = layer.num_columns(), w = g.width();
    const std::span<const int64_t> ids1(g.hash_ids.data(), cols), tok1(g.input_ids.data(), 1);
    const std::span<const Scalar> h1(hidden.data(), w);
    const std::span<Scalar> o1(out.data(), w);
    const std::vector<int64_t> lengths = {g.seq_len, 0};
    std::vector<State> ragged_states = {layer.make_state(), layer.make_state()};
    std::vector<State*> ragged = {&ragged_states[0], &ragged_states[1]};
    const int64_t before = test::allocations();
    layer.forward(g.hash_ids, hidden, g.batch, g.seq_len, out, ws);
    for (int i = 0; i < 3; ++i) {
      layer.forward(ids1, h1, 1, 1, o1, {&ptr, 1}, ws);
      layer.forward_tokens(tok1, h1, 1, 1, o1, {&token_ptr, 1}, ws);
    }
    state.rollback(1);
    token_state.rollback(2);
    layer.forward_ragged(std::span<const int64_t>(g.hash_ids).first(g.seq_len * cols),
                         std::span<const Scalar>(hidden).first(g.seq_len * w), lengths,
                         std::span<Scalar>(out).first(g.seq_len * w), ragged, ws);
    EXPECT_EQ(test::allocations() - before, 0);
  });
}

}  // namespace
}  // namespace engram
