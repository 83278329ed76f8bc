// TieredLayerT and EngramStackT: a layer whose rows come from a tier through a prefetch strategy
// gives the resident layer's output bit for bit (both layer variants; SyncPrefetch and
// LookAheadPrefetch with k = 1..3 batches in flight; staging budgets below one batch; decode steps
// of one token with states), tier errors reach the caller for their batch only, and the stack
// equals each layer alone with every fetch issued before the first apply.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engram/layer/engram_layer.hpp"
#include "engram/layer/engram_stack.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "engram/layer/tiered_layer.hpp"
#include "engram/memory/packed_format.hpp"
#include "engram/memory/packed_writer.hpp"
#include "engram/memory/tiers/in_memory_tier.hpp"
#include "layer/layer_golden.hpp"
#include "support/error_of.hpp"

namespace engram {
namespace {

using test::error_of;
using ::testing::HasSubstr;

/// An InMemoryTier that counts its fetches and throws on the fetch numbered `fail_at` (1-based).
struct CountingTier {
  const InMemoryTier* inner = nullptr;
  std::shared_ptr<std::atomic<int>> fetches = std::make_shared<std::atomic<int>>(0);
  int fail_at = 0;

  int64_t num_rows() const noexcept { return inner->num_rows(); }
  int64_t row_bytes() const noexcept { return inner->row_bytes(); }
  std::string describe() const { return "counting " + inner->describe(); }
  FetchReport fetch(std::span<const int64_t> ids, std::span<std::byte> out) {
    const int n = ++*fetches;
    ENGRAM_CHECK(n != fail_at, "CountingTier: injected failure of fetch ", n);
    return inner->fetch(ids, out);
  }
};
static_assert(RowTier<CountingTier>);

/// A layer with its table's rows as tier records and the table's metadata.
template <class Layer>
struct TieredSubject {
  Layer layer;
  PackedTableInfo info;
  std::vector<std::byte> records;  // owned rows when the layer's table is synthetic
  std::unique_ptr<InMemoryTier> rows;
};

template <class Layer>
TieredSubject<Layer> golden_subject(const test::LayerGolden& g) {
  TieredSubject<Layer> s{test::load_with_hasher<Layer>(g, g.layer_id), {}, {}, nullptr};
  const NgramHasher& hasher = *s.layer.hasher();
  const bool fused = g.config.variant == Variant::kFused;
  s.info = PackedTableInfo::make(g.config, g.layer_id, fused ? "fp8_e4m3" : "f32", g.primes,
                                 {hasher.multipliers().begin(), hasher.multipliers().end()});
  const int64_t rows = s.info.num_rows;
  if (fused) {
    const TensorView& data = g.weights->at("embed.weight");
    const TensorView& scales = g.weights->at("embed.weight_scale_inv");
    s.rows = std::make_unique<InMemoryTier>(InMemoryTier::from_split(
        data.bytes.first(static_cast<size_t>(rows * s.info.data_bytes_per_row())),
        scales.bytes.first(static_cast<size_t>(rows * s.info.scale_bytes_per_row())),
        s.info.data_bytes_per_row(), s.info.scale_bytes_per_row()));
  } else {
    const TensorView& data = g.weights->at("multi_head_embedding.embedding.weight");
    s.rows = std::make_unique<InMemoryTier>(InMemoryTier::view(
        data.bytes.first(static_cast<size_t>(rows * s.info.row_bytes())), s.info.row_bytes()));
  }
  return s;
}

/// The golden layer's weights with a random f32 table for another layer id (its own hasher).
template <class Layer>
TieredSubject<Layer> synthetic_subject(const test::LayerGolden& g, const Layer& golden,
                                       int64_t layer_id) {
  auto hasher = std::make_shared<const NgramHasher>(g.config, test::dsv3_lookup(), layer_id);
  const std::vector<int64_t> primes(hasher->primes().begin(), hasher->primes().end());
  PackedTableInfo info =
      PackedTableInfo::make(g.config, layer_id, "f32", primes,
                            {hasher->multipliers().begin(), hasher->multipliers().end()});
  std::vector<std::byte> records(static_cast<size_t>(info.num_rows * info.row_bytes()));
  std::mt19937 rng(static_cast<unsigned>(layer_id));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (size_t i = 0; i < records.size(); i += 4) {
    const float v = normal(rng);
    std::memcpy(records.data() + i, &v, 4);
  }
  auto weights = std::make_shared<typename Layer::Weights>(golden.weights());
  weights->table = EmbeddingTableT<codec::F32>(records, g.config.row_dim(), primes, "synthetic");
  TieredSubject<Layer> s{Layer(weights, hasher), std::move(info), std::move(records), nullptr};
  s.rows = std::make_unique<InMemoryTier>(InMemoryTier::view(s.records, s.info.row_bytes()));
  return s;
}

/// Token ids [B, len] and hidden [B, len, hc, d] of the golden's positions [t0, t0 + len).
template <class Scalar = float>
std::pair<std::vector<int64_t>, std::vector<Scalar>> slice_golden(const test::LayerGolden& g,
                                                                  int64_t t0, int64_t len) {
  const int64_t w = g.width();
  std::vector<int64_t> ids(static_cast<size_t>(g.batch * len));
  std::vector<Scalar> hidden(static_cast<size_t>(g.batch * len * w));
  for (int64_t b = 0; b < g.batch; ++b) {
    std::copy_n(g.input_ids.begin() + b * g.seq_len + t0, len, ids.begin() + b * len);
    std::copy_n(g.hidden.begin() + (b * g.seq_len + t0) * w, len * w, hidden.begin() + b * len * w);
  }
  return {ids, hidden};
}
/// Writes part [B, len, hc, d] back at positions [t0, t0 + len) of out [B, T, hc, d].
template <class Scalar>
void unslice_golden(const test::LayerGolden& g, const std::vector<Scalar>& part, int64_t t0,
                    int64_t len, std::vector<Scalar>& out) {
  const int64_t w = g.width();
  for (int64_t b = 0; b < g.batch; ++b)
    std::copy_n(part.begin() + b * len * w, len * w, out.begin() + (b * g.seq_len + t0) * w);
}

const char* golden_name(const EngramLayer*) { return "demo_a"; }
const char* golden_name(const FusedEngramLayer*) { return "fused_a"; }
const char* golden_name(const EngramLayerT<double>*) { return "demo_b"; }

template <class Layer>
class TieredLayerTest : public ::testing::Test {
 protected:
  using Scalar = typename TieredLayerT<Layer, CountingTier, SyncPrefetch>::Scalar;

  TieredLayerTest()
      : g(test::load_layer_golden(golden_name(static_cast<const Layer*>(nullptr)))),
        subject(golden_subject<Layer>(g)),
        hidden(g.hidden.begin(), g.hidden.end()) {}

  /// Resident output of token ids in chunks of `chunk` tokens per sequence, with states.
  std::vector<Scalar> resident_chunked(int64_t chunk) const {
    const Layer& layer = subject.layer;
    std::vector<typename Layer::State> states;
    for (int64_t b = 0; b < g.batch; ++b) states.push_back(layer.make_state());
    std::vector<typename Layer::State*> ptrs;
    for (auto& s : states) ptrs.push_back(&s);
    typename Layer::Workspace ws;
    std::vector<Scalar> out(g.expected.size());
    for (int64_t t0 = 0; t0 < g.seq_len; t0 += chunk) {
      const int64_t len = std::min(chunk, g.seq_len - t0);
      auto [ids, hidden] = slice(t0, len);
      std::vector<Scalar> part(hidden.size());
      layer.forward_tokens(ids, hidden, g.batch, len, part, ptrs, ws);
      unslice(part, t0, len, out);
    }
    return out;
  }

  std::pair<std::vector<int64_t>, std::vector<Scalar>> slice(int64_t t0, int64_t len) const {
    return slice_golden<Scalar>(g, t0, len);
  }
  void unslice(const std::vector<Scalar>& part, int64_t t0, int64_t len,
               std::vector<Scalar>& out) const {
    unslice_golden(g, part, t0, len, out);
  }

  /// The tiered layer's output in chunks of `chunk`, keeping up to `ahead` tickets in flight.
  template <class Policy>
  std::vector<Scalar> tiered_chunked(Policy policy, int64_t chunk, int ahead, CountingTier tier) {
    TieredLayerT<Layer, CountingTier, Policy> tiered(subject.layer, tier, subject.info, policy,
                                                     g.batch * chunk);
    std::vector<typename Layer::State> states;
    for (int64_t b = 0; b < g.batch; ++b) states.push_back(tiered.make_state());
    std::vector<typename Layer::State*> ptrs;
    for (auto& s : states) ptrs.push_back(&s);
    typename Layer::Workspace ws;
    std::vector<Scalar> out(g.expected.size(), -7.0f);
    struct InFlight {
      typename TieredLayerT<Layer, CountingTier, Policy>::Ticket ticket;
      int64_t t0, len;
    };
    std::vector<InFlight> queue;
    int64_t next = 0;
    while (next < g.seq_len || !queue.empty()) {
      while (next < g.seq_len && static_cast<int>(queue.size()) < ahead) {
        const int64_t len = std::min(chunk, g.seq_len - next);
        auto ids = slice(next, len).first;
        queue.push_back({tiered.prefetch(ids, g.batch, len, ptrs), next, len});
        next += len;
      }
      const InFlight f = queue.front();
      queue.erase(queue.begin());
      auto hidden = slice(f.t0, f.len).second;
      std::vector<Scalar> part(hidden.size());
      tiered.forward(f.ticket, hidden, part, ptrs, ws);
      unslice(part, f.t0, f.len, out);
    }
    EXPECT_EQ(tiered.in_flight(), 0);
    for (const auto& s : states) EXPECT_EQ(s.position(), g.seq_len);
    return out;
  }

  /// Bytes of one token's rows (columns x record bytes).
  int64_t token_bytes() const { return g.config.num_columns() * subject.info.row_bytes(); }

  CountingTier counting(int fail_at = 0) const {
    return {.inner = subject.rows.get(), .fail_at = fail_at};
  }

  test::LayerGolden g;
  TieredSubject<Layer> subject;
  std::vector<Scalar> hidden;  // g.hidden as Scalar
};

// double: the staged float rows are converted before the layer runs.
using LayerTypes = ::testing::Types<EngramLayer, FusedEngramLayer, EngramLayerT<double>>;
TYPED_TEST_SUITE(TieredLayerTest, LayerTypes);

TYPED_TEST(TieredLayerTest, WholeBatchEqualsResidentForEveryStrategy) {
  const auto& g = this->g;
  typename TypeParam::Workspace ws;
  const std::vector<typename TestFixture::Scalar> want = this->resident_chunked(g.seq_len);
  const int64_t token_bytes = this->token_bytes();
  auto check = [&](auto policy, const std::string& name) {
    SCOPED_TRACE(name);
    CountingTier tier = this->counting();
    TieredLayerT<TypeParam, CountingTier, decltype(policy)> tiered(
        this->subject.layer, tier, this->subject.info, policy, g.tokens());
    std::vector<typename TestFixture::Scalar> out(want.size(), -7.0f);
    tiered.forward(tiered.prefetch(g.input_ids, g.batch, g.seq_len), this->hidden, out, ws);
    EXPECT_EQ(out, want);
    EXPECT_EQ(tiered.fetched().rows, g.tokens() * g.config.num_columns());
    const StagingPlan plan = tiered.staging_plan();
    EXPECT_EQ(*tier.fetches, (g.tokens() + plan.slot_tokens - 1) / plan.slot_tokens);
    if (policy.staging_bytes > 0) {
      EXPECT_LE(plan.slots * plan.slot_tokens * token_bytes, policy.staging_bytes);
    }
  };
  check(SyncPrefetch{}, "sync");
  check(SyncPrefetch{.staging_bytes = token_bytes}, "sync, budget of one token");
  for (int k = 1; k <= 3; ++k) {
    check(LookAheadPrefetch{.batches = k}, "look-ahead k = " + std::to_string(k));
    // A budget smaller than one batch: pieces of 3 tokens (k <= 3 slots), still exact.
    check(LookAheadPrefetch{.batches = k, .staging_bytes = 3 * k * token_bytes + token_bytes - 1},
          "look-ahead k = " + std::to_string(k) + ", budget below one batch");
  }
}

TYPED_TEST(TieredLayerTest, ChunksAndDecodeStepsWithTicketsInFlight) {
  const int64_t token_bytes = this->token_bytes();
  for (const int64_t chunk : {int64_t{1}, int64_t{5}}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    const std::vector<typename TestFixture::Scalar> want = this->resident_chunked(chunk);
    EXPECT_EQ(this->tiered_chunked(SyncPrefetch{}, chunk, 1, this->counting()), want);
    for (int k = 1; k <= 3; ++k) {
      SCOPED_TRACE("k = " + std::to_string(k));
      EXPECT_EQ(this->tiered_chunked(LookAheadPrefetch{.batches = k}, chunk, k, this->counting()),
                want);
      EXPECT_EQ(this->tiered_chunked(LookAheadPrefetch{.batches = k, .staging_bytes = token_bytes},
                                     chunk, k, this->counting()),
                want);
    }
  }
}

TYPED_TEST(TieredLayerTest, TierErrorReachesItsBatchOnly) {
  const auto& g = this->g;
  typename TypeParam::Workspace ws;
  const std::vector<typename TestFixture::Scalar> want = this->resident_chunked(g.seq_len);
  const int64_t token_bytes = this->token_bytes();
  auto check = [&](auto policy, int fail_at, const std::string& name) {
    SCOPED_TRACE(name);
    CountingTier tier = this->counting(fail_at);
    TieredLayerT<TypeParam, CountingTier, decltype(policy)> tiered(
        this->subject.layer, tier, this->subject.info, policy, g.tokens());
    const int64_t pieces =
        (g.tokens() + tiered.staging_plan().slot_tokens - 1) / tiered.staging_plan().slot_tokens;
    ASSERT_GE(fail_at, pieces + 1);  // the failure falls in the second batch
    auto first = tiered.prefetch(g.input_ids, g.batch, g.seq_len);
    auto second = tiered.prefetch(g.input_ids, g.batch, g.seq_len);
    auto third = tiered.prefetch(g.input_ids, g.batch, g.seq_len);
    std::vector<typename TestFixture::Scalar> out(want.size(), -7.0f);
    tiered.forward(first, this->hidden, out, ws);
    EXPECT_EQ(out, want);
    std::fill(out.begin(), out.end(), -7.0f);
    EXPECT_THAT(error_of([&] { tiered.forward(second, this->hidden, out, ws); }),
                HasSubstr("injected failure of fetch"));
    EXPECT_EQ(tiered.in_flight(), 1);  // the failed ticket is dropped
    EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](auto v) { return v == -7.0f; }))
        << "a failed batch wrote its output";
    tiered.forward(third, this->hidden, out, ws);
    EXPECT_EQ(out, want);
    EXPECT_EQ(tiered.in_flight(), 0);
  };
  check(LookAheadPrefetch{.batches = 3}, 2, "look-ahead, whole batches");
  check(SyncPrefetch{.batches = 3}, 2, "sync, whole batches");
  // Pieces of 2 tokens: the second batch's second piece fails; its remaining pieces are dropped.
  const int64_t pieces = (g.tokens() + 1) / 2;
  check(LookAheadPrefetch{.batches = 3, .staging_bytes = 3 * 2 * token_bytes},
        static_cast<int>(pieces + 2), "look-ahead, pieces");
}

TYPED_TEST(TieredLayerTest, MisuseIsNamed) {
  const auto& g = this->g;
  CountingTier tier = this->counting();
  const int64_t token_bytes = this->token_bytes();
  using Tiered = TieredLayerT<TypeParam, CountingTier, LookAheadPrefetch>;
  EXPECT_THAT(error_of([&] {
                Tiered(this->subject.layer, tier, this->subject.info,
                       {.batches = 1, .staging_bytes = token_bytes - 1}, g.tokens());
              }),
              HasSubstr("holds no token"));
  Tiered tiered(this->subject.layer, tier, this->subject.info, {.batches = 2}, g.tokens());
  typename TypeParam::Workspace ws;
  std::vector<typename TestFixture::Scalar> out(g.expected.size());
  auto a = tiered.prefetch(g.input_ids, g.batch, g.seq_len);
  auto b = tiered.prefetch(g.input_ids, g.batch, g.seq_len);
  EXPECT_THAT(error_of([&] { tiered.prefetch(g.input_ids, g.batch, g.seq_len); }),
              HasSubstr("2 tickets in flight"));
  EXPECT_THAT(error_of([&] { tiered.forward(b, this->hidden, out, ws); }),
              HasSubstr("not the oldest in flight"));
  tiered.stage(a);  // waits and decodes; the forward then only runs the layer
  EXPECT_EQ(tiered.in_flight(), 2);
  tiered.forward(a, this->hidden, out, ws);
  EXPECT_EQ(out, this->resident_chunked(g.seq_len));
  EXPECT_THAT(error_of([&] { tiered.forward(a, this->hidden, out, ws); }),
              HasSubstr("already used"));
  tiered.discard(b);
  EXPECT_EQ(tiered.in_flight(), 0);
  EXPECT_THAT(error_of([&] { tiered.prefetch(g.input_ids, g.batch, g.seq_len + g.tokens()); }),
              HasSubstr("exceeds max_tokens"));
}

// The stack: layers 1 and 15 of the demo config (the golden layer and a synthetic one), resident
// or tiered, equal each layer alone; every tiered fetch is issued by begin().
class EngramStackTest : public ::testing::Test {
 protected:
  EngramStackTest() : g(test::load_layer_golden("demo_a")) {
    subjects.push_back(golden_subject<EngramLayer>(g));
    const int64_t other =
        g.config.layer_ids[0] == g.layer_id ? g.config.layer_ids[1] : g.config.layer_ids[0];
    subjects.push_back(synthetic_subject<EngramLayer>(g, subjects[0].layer, other));
  }
  const TieredSubject<EngramLayer>& subject(int64_t layer_id) const {
    return subjects[0].info.layer_id == layer_id ? subjects[0] : subjects[1];
  }

  test::LayerGolden g;
  std::vector<TieredSubject<EngramLayer>> subjects;
};

TEST_F(EngramStackTest, EachLayerEqualsItAloneAndFetchesStartAtBegin) {
  for (const int tiered_mask : {0, 1, 2, 3}) {
    SCOPED_TRACE("tiered layers mask " + std::to_string(tiered_mask));
    std::vector<AnyTier> tiers;
    std::vector<std::shared_ptr<std::atomic<int>>> counters;
    for (const auto& s : subjects) {
      CountingTier counting{.inner = s.rows.get()};
      counters.push_back(counting.fetches);
      tiers.push_back(AnyTier::make<CountingTier>(counting));
    }
    EngramStack stack(g.config, g.tokens());
    int tiered_count = 0;
    for (size_t i = 0; i < subjects.size(); ++i) {
      if (tiered_mask & (1 << i)) {
        stack.set_tiered(subjects[i].info.layer_id, subjects[i].layer, tiers[i], subjects[i].info,
                         {.batches = 1});
        ++tiered_count;
      } else {
        stack.set_resident(subjects[i].info.layer_id, subjects[i].layer);
      }
    }
    // Decode: the first 3 tokens of each sequence one at a time, then the rest as one chunk.
    std::vector<EngramStack::State> states;
    for (int64_t b = 0; b < g.batch; ++b) states.push_back(stack.make_state());
    std::vector<EngramStack::State*> ptrs;
    for (auto& s : states) ptrs.push_back(&s);
    std::vector<std::vector<EngramLayer::State>> alone_states(subjects.size());
    for (size_t i = 0; i < subjects.size(); ++i)
      for (int64_t b = 0; b < g.batch; ++b)
        alone_states[i].push_back(subjects[i].layer.make_state());
    EngramLayer::Workspace ws;
    for (int64_t t0 = 0; t0 < g.seq_len;) {
      const int64_t len = t0 < 3 ? 1 : g.seq_len - t0;
      const auto [ids, hidden] = slice_golden(g, t0, len);
      const int before = *counters[0] + *counters[1];
      stack.begin(ids, g.batch, len, ptrs);
      EXPECT_EQ(stack.pending(), 2);
      // Every tiered layer's fetch was issued by begin(): its worker gets to it with no apply.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (*counters[0] + *counters[1] - before < tiered_count &&
             std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      EXPECT_EQ(*counters[0] + *counters[1] - before, tiered_count);
      // Apply in reverse config order: each equals the layer alone with its own states.
      for (size_t i = subjects.size(); i-- > 0;) {
        const int64_t id = subjects[i].info.layer_id;
        std::vector<float> got(hidden.size(), -7.0f), want(hidden.size());
        stack.apply(id, hidden, got);
        std::vector<EngramLayer::State*> alone;
        for (auto& s : alone_states[i]) alone.push_back(&s);
        subjects[i].layer.forward_tokens(ids, hidden, g.batch, len, want, alone, ws);
        EXPECT_EQ(got, want) << "layer " << id << " at position " << t0;
      }
      EXPECT_EQ(stack.pending(), 0);
      t0 += len;
    }
  }
}

TEST_F(EngramStackTest, AddToIsTheResidualAndMisuseIsNamed) {
  EngramStack stack(g.config, g.tokens(), [&](int64_t id) { return subject(id).layer; });
  const int64_t first = g.config.layer_ids[0];
  std::vector<float> hidden = g.hidden, want(g.hidden.size());
  EngramLayer::Workspace ws;
  subject(first).layer.forward_tokens(g.input_ids, g.hidden, g.batch, g.seq_len, want, ws);
  for (size_t k = 0; k < want.size(); ++k) want[k] += g.hidden[k];
  stack.begin(g.input_ids, g.batch, g.seq_len);
  stack.add_to(first, hidden);
  EXPECT_EQ(hidden, want);
  EXPECT_THAT(error_of([&] { stack.add_to(first, hidden); }), HasSubstr("has no batch to apply"));
  EXPECT_THAT(error_of([&] { stack.begin(g.input_ids, g.batch, g.seq_len); }),
              HasSubstr("was not applied"));
  stack.cancel();
  EXPECT_EQ(stack.pending(), 0);
  stack.begin(g.input_ids, g.batch, g.seq_len);
  EXPECT_THAT(error_of([&] { stack.apply(7, hidden, hidden); }),
              HasSubstr("no Engram layer at layer 7"));
  EXPECT_THAT(error_of([&] { stack.set_resident(first, subject(first).layer); }),
              HasSubstr("while a batch is in flight"));
  stack.cancel();
  EXPECT_THAT(error_of([&] { stack.set_resident(first, subject(g.config.layer_ids[1]).layer); }),
              HasSubstr("hashes for layer"));
}

}  // namespace
}  // namespace engram
