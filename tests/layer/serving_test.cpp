// Serving with both layers (goldens in tests/data/layer/, token-id front end): speculative decoding
// (k drafts, then rollback(j) of the rejected ones == feeding the accepted tokens alone, for every
// 0 <= j <= k, over repeated rounds, with dead tokens among the drafts: outputs of the accepted and
// later tokens and the state, bit for bit), rollback limits, and ragged batches (sequences of
// different lengths, 0 and 1 included, each with its own state == each fed alone; threads 1, 2).
// Bit for bit holds where the projection computes each row independently of the others (the
// AVX-512 panel kernel); other builds compare to float rounding.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "engram/layer/engram_layer.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "layer/layer_golden.hpp"
#include "support/allocation_counter.hpp"
#include "support/error_of.hpp"

namespace engram {
namespace {

using test::error_of;
using test::LayerGolden;
using test::load_layer_golden;
using test::load_with_hasher;
using test::relative_max_error;
using ::testing::HasSubstr;

const char* const kDemoGoldens[] = {"demo_a", "demo_b", "demo_c", "demo_d"};
const char* const kFusedGoldens[] = {"fused_a", "fused_b", "fused_c"};

constexpr bool kRowExact = detail::kHasPanelKernel<float>;

void expect_same_outputs(const std::vector<float>& actual, const std::vector<float>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  if (actual.empty()) return;  // memcmp of null pointers is undefined even for 0 bytes
  if (kRowExact)
    EXPECT_EQ(0, std::memcmp(actual.data(), expected.data(), actual.size() * sizeof(float)));
  else
    EXPECT_LT(relative_max_error(actual, expected), 1e-6);
}

void expect_same_state(const EngramDecodeState& actual, const EngramDecodeState& expected) {
  EXPECT_EQ(actual.position(), expected.position());
  EXPECT_EQ(actual.hash_state(), expected.hash_state());
  ASSERT_EQ(actual.history_rows(), expected.history_rows());
  for (int64_t j = 0; j < actual.history_rows(); ++j) {
    const auto a = actual.conv_history_row(j), e = expected.conv_history_row(j);
    if (kRowExact)
      EXPECT_EQ(0, std::memcmp(a.data(), e.data(), a.size_bytes())) << "conv history row " << j;
    else
      EXPECT_LT(relative_max_error(a, e), 1e-6) << "conv history row " << j;
  }
}

/// One sequence's tokens: ids [T], hidden [T, hc * d], live [T].
struct Tokens {
  std::vector<int64_t> ids;
  std::vector<float> hidden;
  std::vector<uint8_t> live;
  int64_t width = 0;

  int64_t size() const { return static_cast<int64_t>(ids.size()); }
  Tokens slice(int64_t first, int64_t count) const {
    return {{ids.begin() + first, ids.begin() + first + count},
            {hidden.begin() + first * width, hidden.begin() + (first + count) * width},
            {live.begin() + first, live.begin() + first + count},
            width};
  }
  void append(const Tokens& more) {
    ids.insert(ids.end(), more.ids.begin(), more.ids.end());
    hidden.insert(hidden.end(), more.hidden.begin(), more.hidden.end());
    live.insert(live.end(), more.live.begin(), more.live.end());
  }
};

/// Row b of the golden's batch, rotated left by `shift`, with every 5th token from `dead_from`
/// dead (dead_from < 0: all live).
Tokens golden_row(const LayerGolden& g, int64_t b, int64_t shift, int64_t dead_from) {
  const int64_t T = g.seq_len, w = g.width();
  Tokens row{{}, {}, {}, w};
  for (int64_t i = 0; i < T; ++i) {
    const int64_t t = (i + shift) % T;
    row.ids.push_back(g.input_ids[b * T + t]);
    row.hidden.insert(row.hidden.end(), g.hidden.begin() + (b * T + t) * w,
                      g.hidden.begin() + (b * T + t + 1) * w);
    row.live.push_back(dead_from >= 0 && i >= dead_from && (i - dead_from) % 5 == 0 ? 0 : 1);
  }
  return row;
}

/// Drafts the speculator got wrong: other ids, hidden states and liveness than `truth`.
Tokens wrong_drafts(const Tokens& truth, int64_t vocab) {
  Tokens wrong = truth;
  for (int64_t i = 0; i < wrong.size(); ++i) {
    wrong.ids[i] = (truth.ids[i] * 7 + 13 + i) % vocab;
    wrong.live[i] = i % 3 == 1 ? 0 : 1;
  }
  for (float& h : wrong.hidden) h = 0.25f - 0.5f * h;
  return wrong;
}

template <class Layer>
std::vector<float> feed(const Layer& layer, typename Layer::State& state, const Tokens& tokens,
                        typename Layer::Workspace& ws) {
  typename Layer::State* ptr = &state;
  std::vector<float> out(tokens.hidden.size(), -1.0f);
  layer.forward_tokens(tokens.ids, tokens.hidden, 1, tokens.size(), out, {&ptr, 1}, ws,
                       tokens.live);
  return out;
}

/// Rounds of k drafts against one sequence of golden `name`: in each round every j in [0, n]
/// (n = drafts this round) is tried on copies (drafts then rollback(j) against the accepted
/// n - j tokens alone, then three later tokens on both), and the sequence moves on by one of them.
template <class Layer>
void check_drafts_then_rollback(const char* name, int64_t k, int64_t max_rollback) {
  SCOPED_TRACE(std::string(name) + ", k " + std::to_string(k) + ", max_rollback " +
               std::to_string(max_rollback));
  const LayerGolden g = load_layer_golden(name);
  const Layer layer = load_with_hasher<Layer>(g, g.layer_id);
  const auto vocab = static_cast<int64_t>(test::dsv3_lookup().size());
  const Tokens truth = golden_row(g, 0, 0, /*dead_from=*/2);
  const int64_t T = truth.size();
  typename Layer::Workspace ws;
  typename Layer::State spec = layer.make_state(max_rollback), accepted = layer.make_state();
  Tokens fed{{}, {}, {}, g.width()};
  std::vector<float> accepted_out;
  for (int64_t p = 0, round = 0; p < T; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + " at token " + std::to_string(p));
    const int64_t n = std::min(k, T - p);
    auto drafts_for = [&](int64_t j) {
      Tokens drafts = truth.slice(p, n - j);
      drafts.append(wrong_drafts(truth.slice(p + n - j, j), vocab));
      return drafts;
    };
    for (int64_t j = 0; j <= n; ++j) {
      SCOPED_TRACE("rollback " + std::to_string(j));
      typename Layer::State a = spec, b = accepted;
      const std::vector<float> draft_out = feed(layer, a, drafts_for(j), ws);
      a.rollback(j);
      const std::vector<float> alone_out = feed(layer, b, truth.slice(p, n - j), ws);
      expect_same_outputs({draft_out.begin(), draft_out.begin() + (n - j) * g.width()}, alone_out);
      expect_same_state(a, b);
      const Tokens later = truth.slice(p + n - j, std::min<int64_t>(3, T - p - n + j));
      expect_same_outputs(feed(layer, a, later, ws), feed(layer, b, later, ws));
      expect_same_state(a, b);
    }
    const int64_t j = (round * 3 + 1) % (n + 1);
    feed(layer, spec, drafts_for(j), ws);
    spec.rollback(j);
    const std::vector<float> out = feed(layer, accepted, truth.slice(p, n - j), ws);
    accepted_out.insert(accepted_out.end(), out.begin(), out.end());
    fed.append(truth.slice(p, n - j));
    expect_same_state(spec, accepted);
    p += n - j;
  }
  // the accepted sequence, fed in rounds, is the whole sequence (and, all live, the oracle's)
  std::vector<float> whole(accepted_out.size());
  layer.forward_tokens(fed.ids, fed.hidden, 1, T, whole, ws, fed.live);
  EXPECT_LT(relative_max_error(accepted_out, whole), 1e-5);
  EXPECT_THAT(error_of([&] { spec.rollback(spec.rollback_available() + 1); }),
              HasSubstr("cannot undo"));
}

/// Runs check() with 1 and 2 kernel threads.
template <class Check>
void with_one_and_two_threads(const Check& check) {
  const int saved = Eigen::nbThreads();
  for (const int threads : {1, 2}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    Eigen::setNbThreads(threads);
    check();
  }
  Eigen::setNbThreads(saved);
}

TEST(SpeculativeDecoding, DemoDraftsThenRollbackEqualAcceptedAlone) {
  with_one_and_two_threads([] {
    for (const char* name : kDemoGoldens) {
      check_drafts_then_rollback<EngramLayer>(name, 4, 4);
      check_drafts_then_rollback<EngramLayer>(name, 3, 7);
    }
  });
}

TEST(SpeculativeDecoding, FusedDraftsThenRollbackEqualAcceptedAlone) {
  with_one_and_two_threads([] {
    for (const char* name : kFusedGoldens) {
      check_drafts_then_rollback<FusedEngramLayer>(name, 4, 4);
      check_drafts_then_rollback<FusedEngramLayer>(name, 3, 7);
    }
  });
}

template <class Layer>
void check_rollback_limits(const char* name) {
  SCOPED_TRACE(name);
  const LayerGolden g = load_layer_golden(name);
  const Layer layer = load_with_hasher<Layer>(g, g.layer_id);
  const Tokens truth = golden_row(g, 0, 0, -1);
  typename Layer::Workspace ws;

  auto none = layer.make_state();
  feed(layer, none, truth.slice(0, 1), ws);
  EXPECT_EQ(none.rollback_available(), 0);
  EXPECT_THAT(error_of([&] { none.rollback(1); }),
              HasSubstr("cannot undo 1 tokens, 0 can be undone (max_rollback 0, position 1)"));
  none.rollback(0);

  auto state = layer.make_state(3);
  feed(layer, state, truth.slice(0, 2), ws);
  EXPECT_THAT(error_of([&] { state.rollback(3); }),
              HasSubstr("cannot undo 3 tokens, 2 can be undone (max_rollback 3, position 2)"));
  EXPECT_THAT(error_of([&] { state.rollback(-1); }), HasSubstr("cannot undo -1 tokens"));
  feed(layer, state, truth.slice(2, 5), ws);
  EXPECT_EQ(state.rollback_available(), 3);
  state.rollback(2);
  EXPECT_EQ(state.position(), 5);
  EXPECT_THAT(error_of([&] { state.rollback(2); }),
              HasSubstr("cannot undo 2 tokens, 1 can be undone (max_rollback 3, position 5)"));
  feed(layer, state, truth.slice(5, 1), ws);
  EXPECT_EQ(state.rollback_available(), 2);
  state.reset();
  EXPECT_EQ(state.rollback_available(), 0);
  EXPECT_EQ(state.position(), 0);

  // hash_tokens advanced the hash history but no forward_memory followed
  std::vector<int64_t> hash_ids(2 * layer.num_columns());
  typename Layer::State* ptr = &state;
  layer.hash_tokens(std::span(truth.ids).first(2), 1, 2, hash_ids, {&ptr, 1});
  EXPECT_THAT(error_of([&] { state.rollback(0); }),
              HasSubstr("the hash history is at token 2 but the position at token 0"));
}

TEST(SpeculativeDecoding, RollbackPastTheLimitIsAnError) {
  check_rollback_limits<EngramLayer>("demo_a");
  check_rollback_limits<FusedEngramLayer>("fused_a");
}

/// Steady-state speculative decoding (drafts of 4 tokens, rollbacks) allocates nothing.
template <class Layer>
void check_drafts_do_not_allocate(const char* name) {
  SCOPED_TRACE(name);
  const LayerGolden g = load_layer_golden(name);
  const Layer layer = load_with_hasher<Layer>(g, g.layer_id);
  const Tokens truth = golden_row(g, 0, 0, /*dead_from=*/1);
  const int64_t k = 4, w = g.width();
  typename Layer::Workspace ws;
  layer.reserve(ws, k);
  auto state = layer.make_state(k);
  typename Layer::State* states[] = {&state};
  std::vector<float> out(k * w);
  auto round = [&](int64_t p, int64_t j) {
    layer.forward_tokens(std::span(truth.ids).subspan(p, k),
                         std::span(truth.hidden).subspan(p * w, k * w), 1, k, out, states, ws,
                         std::span(truth.live).subspan(p, k));
    state.rollback(j);
  };
  round(0, 1);  // warm-up
  const int64_t before = test::allocations();
  for (int64_t p = 3, j = 0; p + k <= truth.size(); p += k - j, j = (j + 1) % k) round(p, j);
  EXPECT_EQ(test::allocations() - before, 0);
}

TEST(SpeculativeDecoding, SteadyStateDoesNotAllocate) {
  for (const char* name : kDemoGoldens) check_drafts_do_not_allocate<EngramLayer>(name);
  for (const char* name : kFusedGoldens) check_drafts_do_not_allocate<FusedEngramLayer>(name);
}

/// Rounds of ragged batches of 5 sequences (lengths 0 and 1 among them, dead tokens in some)
/// through both front ends, against each sequence fed alone with its own state.
template <class Layer>
void check_ragged_equals_alone(const char* name) {
  SCOPED_TRACE(name);
  const LayerGolden g = load_layer_golden(name);
  const Layer layer = load_with_hasher<Layer>(g, g.layer_id);
  const int64_t S = 5, w = g.width(), cols = layer.num_columns();
  std::vector<Tokens> sequences;
  for (int64_t s = 0; s < S; ++s)
    sequences.push_back(golden_row(g, s % g.batch, 3 * s, s % 2 == 0 ? s : -1));
  const std::vector<std::vector<int64_t>> rounds = {
      {0, 1, 7, 3, 2}, {5, 0, 1, 1, 0}, {1, 9, 0, 4, 6}, {2, 2, 2, 0, 1}};
  typename Layer::Workspace ws;
  std::vector<typename Layer::State> ragged, by_ids, alone;
  for (int64_t s = 0; s < S; ++s) {
    ragged.push_back(layer.make_state(2));
    by_ids.push_back(layer.make_state());
    alone.push_back(layer.make_state());
  }
  std::vector<typename Layer::State*> ragged_ptrs, by_ids_ptrs;
  for (int64_t s = 0; s < S; ++s) {
    ragged_ptrs.push_back(&ragged[s]);
    by_ids_ptrs.push_back(&by_ids[s]);
  }
  std::vector<int64_t> done(S, 0);
  for (size_t r = 0; r < rounds.size(); ++r) {
    SCOPED_TRACE("round " + std::to_string(r));
    const std::vector<int64_t>& lengths = rounds[r];
    Tokens packed{{}, {}, {}, w};
    std::vector<float> expected;
    for (int64_t s = 0; s < S; ++s) {
      const Tokens chunk = sequences[s].slice(done[s], lengths[s]);
      packed.append(chunk);
      const auto out = feed(layer, alone[s], chunk, ws);
      expected.insert(expected.end(), out.begin(), out.end());
      done[s] += lengths[s];
    }
    std::vector<float> out(expected.size(), -1.0f);
    layer.forward_tokens_ragged(packed.ids, packed.hidden, lengths, out, ragged_ptrs, ws,
                                packed.live);
    expect_same_outputs(out, expected);

    // the hash-id front end: hash_tokens (per sequence, advancing by_ids' hash states) + ragged
    std::vector<int64_t> hash_ids(packed.ids.size() * cols);
    for (int64_t s = 0, at = 0; s < S; at += lengths[s++]) {
      typename Layer::State* ptr = &by_ids[s];
      layer.hash_tokens(std::span(packed.ids).subspan(at, lengths[s]), 1, lengths[s],
                        std::span(hash_ids).subspan(at * cols, lengths[s] * cols), {&ptr, 1},
                        std::span(packed.live).subspan(at, lengths[s]));
    }
    std::vector<float> from_ids(expected.size(), -1.0f);
    layer.forward_ragged(hash_ids, packed.hidden, lengths, from_ids, by_ids_ptrs, ws, packed.live);
    expect_same_outputs(from_ids, expected);
    for (int64_t s = 0; s < S; ++s) {
      expect_same_state(ragged[s], alone[s]);
      expect_same_state(by_ids[s], alone[s]);
    }
  }

  // without states each chunk is a whole sequence; the golden's rows as one ragged batch give
  // the oracle's output
  std::vector<int64_t> lengths(g.batch, g.seq_len);
  std::vector<float> out(g.expected.size(), -1.0f);
  layer.forward_tokens_ragged(g.input_ids, g.hidden, lengths, out, {}, ws);
  EXPECT_LT(relative_max_error(out, g.expected), 1e-4);
  std::vector<float> from_ids(g.expected.size(), -1.0f);
  layer.forward_ragged(g.hash_ids, g.hidden, lengths, from_ids, {}, ws);
  expect_same_outputs(from_ids, out);
}

TEST(RaggedBatch, EachSequenceAsIfAlone) {
  with_one_and_two_threads([] {
    for (const char* name : kDemoGoldens) check_ragged_equals_alone<EngramLayer>(name);
    for (const char* name : kFusedGoldens) check_ragged_equals_alone<FusedEngramLayer>(name);
  });
}

TEST(RaggedBatch, Errors) {
  const LayerGolden g = load_layer_golden("fused_b");
  const auto layer = load_with_hasher<FusedEngramLayer>(g, g.layer_id);
  FusedEngramLayer::Workspace ws;
  const std::vector<int64_t> lengths = {2, -1};
  std::vector<float> out(g.width());
  EXPECT_THAT(error_of([&] {
                layer.forward_tokens_ragged(std::span(g.input_ids).first(1),
                                            std::span(g.hidden).first(g.width()), lengths, out, {},
                                            ws);
              }),
              HasSubstr("lengths[1] = -1 must be non-negative"));
  auto state = layer.make_state();
  FusedEngramLayer::State* one[] = {&state};
  const std::vector<int64_t> two = {1, 0};
  EXPECT_THAT(error_of([&] {
                layer.forward_ragged(std::span(g.hash_ids).first(layer.num_columns()),
                                     std::span(g.hidden).first(g.width()), two, out, one, ws);
              }),
              HasSubstr("1 states for 2 sequences"));
  std::vector<int64_t> ids(g.input_ids.begin(), g.input_ids.begin() + 1);
  ids[0] = layer.hasher()->lookup_size() + 5;
  const std::vector<int64_t> lone = {0, 1};
  EXPECT_THAT(error_of([&] {
                layer.forward_tokens_ragged(ids, std::span(g.hidden).first(g.width()), lone, out,
                                            {}, ws);
              }),
              HasSubstr("token id " + std::to_string(layer.hasher()->lookup_size() + 5) +
                        " at sequence 1, position 0"));
}

}  // namespace
}  // namespace engram
