// engram/layer/engram_stack.hpp: the model-level seam. Holds every Engram layer of a model (one
// per config.layer_ids entry, each resident or tiered), hashes a batch's token ids for all of them
// at the model input, issues every tiered layer's fetch at once, and gives the model code
// `apply(layer_id, hidden, out)` between its blocks. Shapes: input_ids [B, T]; hidden and out
// [B, T, hc, d]; B * T <= max_tokens.
//
//   EngramStack stack(config, /*max_tokens=*/512,
//                     [&](int64_t id) { return EngramLayer::load(config, file, hasher(id)); });
//   stack.set_tiered(15, layer15, opened.tier, opened.info, {.batches = 1});   // optional
//   stack.begin(input_ids, B, T);                       // all hashing, all fetches queued
//   for (block : blocks) {
//     if (stack.contains(block.id)) stack.add_to(block.id, hidden);  // hidden += engram(hidden)
//     block(hidden);
//   }
//
// Semantics: begin() runs every tiered layer's prefetch (hash + fetch submitted), then hashes for
// every resident layer, before returning; apply()/add_to() run each layer once per batch, in any
// order, and equal that layer's forward_tokens alone, bit for bit. States (make_state(), one per
// sequence, holding every layer's state) continue sequences across batches (decode, chunked
// prefill). A begin() while layers of the previous batch are unapplied is an engram::Error;
// cancel() drops them (after a tier error, say). Ownership: the stack owns copies of its layers
// (weights shared); tiers must outlive it. Thread safety: one thread drives a stack.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "engram/error.hpp"
#include "engram/io/config.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/layer/tiered_layer.hpp"

namespace engram {

/// What EngramStackT needs of a layer beside TierableLayer: forward on hashed ids, with and
/// without states, in the tiered wrapper's scalar type.
template <class Layer, class Tier, class Policy>
concept StackableLayer = requires(
    const Layer& layer, std::span<const int64_t> ids,
    std::span<const typename TieredLayerT<Layer, Tier, Policy>::Scalar> in,
    std::span<typename TieredLayerT<Layer, Tier, Policy>::Scalar> out,
    std::span<typename Layer::State* const> states, typename Layer::Workspace& ws, int64_t n) {
  layer.forward(ids, in, n, n, out, ws);
  layer.forward(ids, in, n, n, out, states, ws);
};

/// Every Engram layer of a model behind one begin()/apply() seam (see the banner).
/// @tparam Layer EngramLayer or FusedEngramLayer; @tparam Tier, Policy those of its tiered layers.
template <TierableLayer Layer, RowTier Tier = AnyTier, PrefetchStrategy Policy = LookAheadPrefetch>
requires StackableLayer<Layer, Tier, Policy>
class EngramStackT {
 public:
  using Tiered = TieredLayerT<Layer, Tier, Policy>;
  using Scalar = typename Tiered::Scalar;
  using Workspace = typename Layer::Workspace;

  /// One sequence's state through every layer (in layer_ids() order).
  struct State {
    std::vector<typename Layer::State> layers;
  };

  /// An empty stack for config.layer_ids (or the subset `layer_ids` of them, for a model with
  /// fewer blocks); set every layer before begin().
  EngramStackT(const EngramConfig& config, int64_t max_tokens,
               std::span<const int64_t> layer_ids = {});
  /// Every layer resident: make_layer(layer_id) -> Layer for each of config.layer_ids.
  template <class MakeLayer>
  requires std::convertible_to<std::invoke_result_t<MakeLayer&, int64_t>, Layer> EngramStackT(
      const EngramConfig& config, int64_t max_tokens, MakeLayer&& make_layer)
      : EngramStackT(config, max_tokens) {
    for (Entry& e : entries_) set_resident(e.layer_id, make_layer(e.layer_id));
  }
  EngramStackT(const EngramStackT&) = delete;
  EngramStackT& operator=(const EngramStackT&) = delete;
  ~EngramStackT();

  /// Layer `layer_id` gathers from its own table in RAM.
  void set_resident(int64_t layer_id, Layer layer);
  /// Layer `layer_id` fetches its rows from `tier` (must outlive the stack) with `policy`.
  void set_tiered(int64_t layer_id, Layer layer, Tier& tier, const PackedTableInfo& info,
                  Policy policy = {});

  /// The Engram layers' ids, in config order.
  std::vector<int64_t> layer_ids() const {
    std::vector<int64_t> ids;
    for (const Entry& e : entries_) ids.push_back(e.layer_id);
    return ids;
  }
  bool contains(int64_t layer_id) const noexcept {
    return std::ranges::any_of(entries_, [&](const Entry& e) { return e.layer_id == layer_id; });
  }
  /// The layer's tiered wrapper, or null when it is resident (or not set).
  Tiered* tiered(int64_t layer_id) { return entry(layer_id).tiered.get(); }
  int64_t max_tokens() const noexcept { return max_tokens_; }
  /// Layers of the current batch not applied yet.
  int64_t pending() const noexcept {
    return std::ranges::count_if(entries_, [](const Entry& e) { return e.pending; });
  }

  /// A state at the start of a sequence, for every layer.
  State make_state(int64_t max_rollback = 0) const;

  /// Starts a batch of token ids [B, T]: every tiered layer's prefetch, then every resident
  /// layer's hashing; states empty (whole sequences) or one per sequence.
  void begin(std::span<const int64_t> input_ids, int64_t batch, int64_t seq_len,
             std::span<State* const> states = {});

  /// out [B, T, hc, d] = Engram layer `layer_id` on hidden [B, T, hc, d] (the residual add is the
  /// caller's; out may be hidden). Once per layer per batch.
  void apply(int64_t layer_id, std::span<const Scalar> hidden, std::span<Scalar> out);
  /// hidden += Engram layer `layer_id`(hidden).
  void add_to(int64_t layer_id, std::span<Scalar> hidden);

  /// Drops the current batch's layers not applied (their fetches are waited for, errors ignored).
  void cancel();

 private:
  static constexpr std::string_view kWho = "EngramStack";

  struct Entry {
    int64_t layer_id = 0;
    std::optional<Layer> resident;
    std::unique_ptr<Tiered> tiered;
    std::vector<int64_t> hash_ids;  // resident: [max_tokens, cols]
    typename Tiered::Ticket ticket;
    std::vector<typename Layer::State*> states;  // this batch's, one per sequence
    bool pending = false;
  };

  Entry& entry(int64_t layer_id) {
    for (Entry& e : entries_)
      if (e.layer_id == layer_id) return e;
    detail::fail(kWho, ": no Engram layer at layer ", layer_id, " (config.layer_ids)");
  }
  static const Layer& layer_of(const Entry& e) {
    return e.tiered ? e.tiered->layer() : *e.resident;
  }
  std::span<int64_t> hashed(Entry& e) const {
    const int64_t cols = e.resident->config().num_columns();
    ENGRAM_CHECK(batch_ >= 0 && seq_len_ >= 0 && batch_ * seq_len_ <= max_tokens_, kWho,
                 ": a batch of ", batch_, " x ", seq_len_, " tokens exceeds max_tokens ",
                 max_tokens_);
    return {e.hash_ids.data(), static_cast<size_t>(batch_ * seq_len_ * cols)};
  }
  void check_layer(int64_t layer_id, const Layer& layer) const;

  int64_t max_tokens_;
  std::vector<Entry> entries_;
  int64_t batch_ = 0, seq_len_ = 0;
  Workspace ws_;
  std::vector<Scalar> delta_;
};

// Members out of the class body (not implicitly inline): under ENGRAM_EXTERN_TEMPLATES a consumer
// of the extern instantiations below neither instantiates nor compiles them, nor the tiered
// layers, prefetchers and tiers they reach.
template <TierableLayer Layer, RowTier Tier, PrefetchStrategy Policy>
requires StackableLayer<Layer, Tier, Policy> EngramStackT<Layer, Tier, Policy>::EngramStackT(
    const EngramConfig& config, int64_t max_tokens, std::span<const int64_t> layer_ids)
    : max_tokens_(max_tokens) {
  if (layer_ids.empty()) layer_ids = config.layer_ids;
  ENGRAM_CHECK(!layer_ids.empty(), kWho, ": the config has no layer_ids");
  ENGRAM_CHECK(max_tokens >= 1, kWho, ": max_tokens must be positive, found ", max_tokens);
  for (const int64_t id : layer_ids) {
    ENGRAM_CHECK(std::ranges::count(config.layer_ids, id) == 1 && !contains(id), kWho, ": layer ",
                 id, " is not one of the config's layer_ids, or is given twice");
    entries_.emplace_back();
    entries_.back().layer_id = id;
  }
  delta_.resize(static_cast<size_t>(max_tokens * config.hc_mult * config.hidden_size));
}

template <TierableLayer Layer, RowTier Tier, PrefetchStrategy Policy>
requires StackableLayer<Layer, Tier, Policy> EngramStackT<Layer, Tier, Policy>::~EngramStackT() =
    default;

template <TierableLayer Layer, RowTier Tier, PrefetchStrategy Policy>
requires StackableLayer<Layer, Tier, Policy>
void EngramStackT<Layer, Tier, Policy>::set_resident(int64_t layer_id, Layer layer) {
  Entry& e = entry(layer_id);
  check_layer(layer_id, layer);
  e.tiered.reset();
  e.resident.emplace(std::move(layer));
  e.hash_ids.resize(static_cast<size_t>(max_tokens_ * e.resident->config().num_columns()));
}

template <TierableLayer Layer, RowTier Tier, PrefetchStrategy Policy>
requires StackableLayer<Layer, Tier, Policy>
void EngramStackT<Layer, Tier, Policy>::set_tiered(int64_t layer_id, Layer layer, Tier& tier,
                                                   const PackedTableInfo& info, Policy policy) {
  Entry& e = entry(layer_id);
  check_layer(layer_id, layer);
  e.resident.reset();
  e.tiered = std::make_unique<Tiered>(std::move(layer), tier, info, policy, max_tokens_);
}

template <TierableLayer Layer, RowTier Tier, PrefetchStrategy Policy>
requires StackableLayer<Layer, Tier, Policy>
auto EngramStackT<Layer, Tier, Policy>::make_state(int64_t max_rollback) const -> State {
  State state;
  for (const Entry& e : entries_) state.layers.push_back(layer_of(e).make_state(max_rollback));
  return state;
}

template <TierableLayer Layer, RowTier Tier, PrefetchStrategy Policy>
requires StackableLayer<Layer, Tier, Policy>
void EngramStackT<Layer, Tier, Policy>::begin(std::span<const int64_t> input_ids, int64_t batch,
                                              int64_t seq_len, std::span<State* const> states) {
  for (const Entry& e : entries_) {
    ENGRAM_CHECK(e.resident || e.tiered, kWho, ": layer ", e.layer_id, " was never set");
    ENGRAM_CHECK(!e.pending, kWho, ": layer ", e.layer_id,
                 " of the previous batch was not applied (apply it, or cancel())");
  }
  ENGRAM_CHECK(states.empty() || static_cast<int64_t>(states.size()) == batch, kWho, ": ",
               states.size(), " states for a batch of ", batch, " sequences");
  batch_ = batch;
  seq_len_ = seq_len;
  for (size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = entries_[i];
    e.states.clear();
    for (State* s : states) {
      ENGRAM_CHECK(s != nullptr && s->layers.size() == entries_.size(), kWho,
                   ": a state is null or not one of this stack's (make_state())");
      e.states.push_back(&s->layers[i]);
    }
  }
  for (Entry& e : entries_)  // the slow reads first: their fetches start now
    if (e.tiered) {
      e.ticket = e.tiered->prefetch(input_ids, batch, seq_len, e.states);
      e.pending = true;
    }
  for (Entry& e : entries_)
    if (e.resident) {
      e.resident->hash_tokens(input_ids, batch, seq_len, hashed(e), e.states);
      e.pending = true;
    }
}

template <TierableLayer Layer, RowTier Tier, PrefetchStrategy Policy>
requires StackableLayer<Layer, Tier, Policy>
void EngramStackT<Layer, Tier, Policy>::apply(int64_t layer_id, std::span<const Scalar> hidden,
                                              std::span<Scalar> out) {
  Entry& e = entry(layer_id);
  ENGRAM_CHECK(e.pending, kWho, ": layer ", layer_id,
               " has no batch to apply (begin() first; each layer once per batch)");
  e.pending = false;
  if (e.tiered) {
    e.tiered->forward(e.ticket, hidden, out, e.states, ws_);
  } else if (e.states.empty()) {
    e.resident->forward(hashed(e), hidden, batch_, seq_len_, out, ws_);
  } else {
    e.resident->forward(hashed(e), hidden, batch_, seq_len_, out, e.states, ws_);
  }
}

template <TierableLayer Layer, RowTier Tier, PrefetchStrategy Policy>
requires StackableLayer<Layer, Tier, Policy>
void EngramStackT<Layer, Tier, Policy>::add_to(int64_t layer_id, std::span<Scalar> hidden) {
  const std::span<Scalar> delta(delta_.data(), hidden.size());
  ENGRAM_CHECK(hidden.size() <= delta_.size(), kWho, ": hidden has ", hidden.size(),
               " values, more than max_tokens x hc x d = ", delta_.size());
  apply(layer_id, hidden, delta);
  for (size_t k = 0; k < hidden.size(); ++k) hidden[k] += delta[k];
}

template <TierableLayer Layer, RowTier Tier, PrefetchStrategy Policy>
requires StackableLayer<Layer, Tier, Policy>
void EngramStackT<Layer, Tier, Policy>::cancel() {
  for (Entry& e : entries_) {
    if (e.pending && e.tiered) e.tiered->discard(e.ticket);
    e.pending = false;
  }
}

template <TierableLayer Layer, RowTier Tier, PrefetchStrategy Policy>
requires StackableLayer<Layer, Tier, Policy>
void EngramStackT<Layer, Tier, Policy>::check_layer(int64_t layer_id, const Layer& layer) const {
  ENGRAM_CHECK(!std::ranges::any_of(entries_, [](const Entry& e) { return e.pending; }), kWho,
               ": layers cannot be replaced while a batch is in flight");
  if (const auto* hasher = layer.hasher(); hasher != nullptr)
    ENGRAM_CHECK(hasher->layer_id() == layer_id, kWho, ": the layer set at layer ", layer_id,
                 " hashes for layer ", hasher->layer_id());
}

/// The common case: demo layers, tiers behind AnyTier, look-ahead prefetch.
using EngramStack = EngramStackT<EngramLayer>;

#ifdef ENGRAM_EXTERN_TEMPLATES
extern template class EngramStackT<EngramLayerT<float, DemoBlock, NumpyMultiplyXor>>;
extern template class EngramStackT<EngramLayerT<float, V41Block, NumpyMultiplyXor>>;
#endif

}  // namespace engram
