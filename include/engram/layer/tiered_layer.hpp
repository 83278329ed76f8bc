// engram/layer/tiered_layer.hpp: an Engram layer whose table lives in a RowTier (SSD file, cache,
// remote store; memory/tiers/) instead of RAM, with its rows fetched by a prefetch strategy
// (prefetch_policy.hpp) while earlier blocks compute. Shapes as the layer's (engram_layer.hpp):
// input_ids [B, T], hidden and out [B, T, hc, d]; the staged memory is [B, T, cols * row_dim].
//
//   TieredLayerT<EngramLayer, AnyTier, LookAheadPrefetch> tiered(layer, opened.tier, opened.info,
//                                                                {.batches = 2},
//                                                                /*max_tokens=*/512);
//   auto ticket = tiered.prefetch(ids, B, T, states);     // hashes, queues the row reads; at once
//   ... earlier blocks run ...
//   tiered.forward(ticket, hidden, out, states, ws);      // waits, decodes, layer.forward_memory
//
// Semantics: prefetch hashes the tokens with the layer's hasher (advancing states' hash history,
// so a sequence's chunks must be prefetched in order) and, for LookAheadPrefetch, submits the
// fetch; forward(ticket) takes tickets in prefetch order (FIFO; another is an engram::Error) with
// the same states, and runs forward_memory (conv history and position). The output equals the
// resident layer's forward_tokens bit for bit (same rows, same kernels). More than plan.tickets
// tickets in flight is an error (no blocking: the caller's thread is the one that drains them).
// stage(ticket) waits and decodes the oldest ticket ahead of its forward; discard() drops it.
// Errors: a tier failure is rethrown by stage/forward for that ticket only (dropped); `out` and
// the conv history are untouched, but prefetch advanced the hash history: reset or roll back the
// states. Later tickets stay valid.
// Ownership: holds a copy of the layer (weights shared); the tier must outlive this object.
// Thread safety: one thread drives a TieredLayerT; the look-ahead worker owns the tier while it
// fetches. Steady state allocates nothing (buffers sized at construction).
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "engram/error.hpp"
#include "engram/layer/decode_state.hpp"
#include "engram/layer/prefetch_policy.hpp"
#include "engram/memory/packed_format.hpp"
#include "engram/memory/tiers/any_tier.hpp"
#include "engram/memory/tiers/row_tier.hpp"
#include "engram/memory/tiers/tiered_memory.hpp"

namespace engram {

namespace detail {
template <class State>
struct StateScalar;
template <class S>
struct StateScalar<EngramDecodeStateT<S>> {
  using type = S;
};
}  // namespace detail

/// What TieredLayerT needs of a layer: the token front end alone, forward_memory with states.
template <class L>
concept TierableLayer = std::copy_constructible<L> &&
    requires(const L& layer, std::span<const int64_t> ids, std::span<int64_t> hash_ids,
             std::span<const typename detail::StateScalar<typename L::State>::type> in,
             std::span<typename detail::StateScalar<typename L::State>::type> out,
             std::span<typename L::State* const> states, typename L::Workspace& ws, int64_t n,
             std::span<const uint8_t> live) {
  { layer.config() } -> std::convertible_to<const EngramConfig&>;
  layer.hash_tokens(ids, n, n, hash_ids, states, live);
  layer.forward_memory(in, in, n, n, out, ws);
  layer.forward_memory(in, in, n, n, out, states, ws);
  { layer.make_state(n) } -> std::same_as<typename L::State>;
};

/// A layer over a tiered table with a prefetch strategy (see the banner).
/// @tparam Layer EngramLayer, FusedEngramLayer (any TierableLayer)
/// @tparam Tier a RowTier (AnyTier, CachedTier<DirectIOTier>, ...)
/// @tparam Policy SyncPrefetch or LookAheadPrefetch (a PrefetchStrategy)
template <TierableLayer Layer, RowTier Tier = AnyTier, PrefetchStrategy Policy = LookAheadPrefetch>
class TieredLayerT {
 public:
  using Scalar = typename detail::StateScalar<typename Layer::State>::type;
  using State = typename Layer::State;
  using Workspace = typename Layer::Workspace;
  using Memory = TieredMemoryT<Tier, typename Policy::Fetch>;

  /// Names a prefetched batch; pass it to forward() (or discard()) once, in prefetch order.
  class Ticket {
   public:
    Ticket() = default;
    bool valid() const noexcept { return sequence_ != 0; }

   private:
    friend class TieredLayerT;
    explicit Ticket(uint64_t sequence) : sequence_(sequence) {}
    uint64_t sequence_ = 0;
  };

  /// @param layer      the layer (its table may be shape-only: CheckpointOptions::table_in_tier)
  /// @param tier       the table's rows; must outlive this object
  /// @param info       the table's metadata (codec, column offsets and sizes)
  /// @param policy     the prefetch strategy
  /// @param max_tokens largest batch (B * T) a prefetch may carry
  TieredLayerT(Layer layer, Tier& tier, const PackedTableInfo& info, Policy policy,
               int64_t max_tokens)
      : layer_(std::move(layer)),
        policy_(policy),
        cols_(layer_.config().num_columns()),
        memory_dim_(layer_.config().memory_dim()),
        max_tokens_(max_tokens),
        plan_(policy_.plan(max_tokens, cols_ * info.row_bytes())),
        memory_(tier, info, {.max_tokens = plan_.slot_tokens, .slots = plan_.slots}) {
    ENGRAM_CHECK(
        static_cast<int64_t>(info.offsets.size()) == cols_ && info.row_dim * cols_ == memory_dim_,
        kWho, ": table ", tier.describe(), " has ", info.offsets.size(), " columns of row_dim ",
        info.row_dim, ", the layer expects ", cols_, " columns of ",
        memory_dim_ / std::max<int64_t>(1, cols_));
    if (const auto* hasher = layer_.hasher(); hasher != nullptr)
      ENGRAM_CHECK(std::ranges::equal(hasher->primes(), info.primes), kWho,
                   ": the layer's hasher has other column sizes (primes) than table ",
                   tier.describe(), " (a table of another layer or config?)");
    pending_.resize(static_cast<size_t>(plan_.tickets));
    for (Pending& p : pending_) {
      p.hash_ids.resize(static_cast<size_t>(max_tokens_ * cols_));
      p.live.reserve(static_cast<size_t>(max_tokens_));
    }
    live_.reserve(static_cast<size_t>(max_tokens_));
    pieces_.resize(static_cast<size_t>(plan_.slots));
    staged_.resize(static_cast<size_t>(max_tokens_ * memory_dim_));
    if constexpr (!std::is_same_v<Scalar, float>)
      converted_.resize(static_cast<size_t>(max_tokens_ * memory_dim_));
  }
  TieredLayerT(const TieredLayerT&) = delete;
  TieredLayerT& operator=(const TieredLayerT&) = delete;

  const Layer& layer() const noexcept { return layer_; }
  const Policy& policy() const noexcept { return policy_; }
  const StagingPlan& staging_plan() const noexcept { return plan_; }
  int64_t max_tokens() const noexcept { return max_tokens_; }
  /// Tickets prefetched and not yet forwarded or discarded.
  int in_flight() const noexcept { return count_; }
  /// Everything the tier reported so far; memory().prefetcher().stats() has the timings.
  const FetchReport& fetched() const noexcept { return fetched_; }
  Memory& memory() noexcept { return memory_; }
  State make_state(int64_t max_rollback = 0) const { return layer_.make_state(max_rollback); }

  /// Hashes token ids [B, T] (continuing states[b] when given, one per sequence) and, for
  /// look-ahead strategies, queues their rows' fetch. Needs a layer with a hasher. live: empty or
  /// [B, T] (0 = dead token, hashed as pad; kept for the fused layer's gate in forward()).
  Ticket prefetch(std::span<const int64_t> input_ids, int64_t batch, int64_t seq_len,
                  std::span<State* const> states = {}, std::span<const uint8_t> live = {}) {
    Pending& p = reserve_ticket(batch, seq_len);
    layer_.hash_tokens(input_ids, batch, seq_len, p.ids(cols_), states, live);
    p.live.assign(live.begin(), live.end());
    return commit_ticket(p);
  }
  /// As prefetch, from hash ids [B, T, cols] already computed (copied).
  Ticket prefetch_hashes(std::span<const int64_t> hash_ids, int64_t batch, int64_t seq_len) {
    Pending& p = reserve_ticket(batch, seq_len);
    p.live.clear();
    ENGRAM_CHECK(static_cast<int64_t>(hash_ids.size()) == p.tokens * cols_, kWho, ": hash_ids has ",
                 hash_ids.size(), " values, expected ", p.tokens * cols_, " ([B, T, cols] = [",
                 batch, ", ", seq_len, ", ", cols_, "])");
    std::ranges::copy(hash_ids, p.hash_ids.begin());
    return commit_ticket(p);
  }

  /// Waits for the ticket's rows (fetching them now for SyncPrefetch), decodes them and runs the
  /// layer: out [B, T, hc, d] = layer(memory, hidden), continuing states (those given to prefetch,
  /// or none). Rethrows the tier's error for this ticket.
  void forward(const Ticket& ticket, std::span<const Scalar> hidden, std::span<Scalar> out,
               std::span<State* const> states, Workspace& ws) {
    stage(ticket);
    Pending& p = pending_[static_cast<size_t>(head_)];
    const int64_t batch = p.batch, seq_len = p.seq_len, tokens = p.tokens;
    live_.swap(p.live);
    pop_front();  // staged_ keeps the rows until the next stage()
    std::span<const Scalar> memory = staged(tokens);
    if constexpr (requires {
                    layer_.forward_memory(memory, hidden, batch, seq_len, out, ws, live_);
                  }) {
      if (states.empty()) {
        layer_.forward_memory(memory, hidden, batch, seq_len, out, ws, live_);
      } else {
        layer_.forward_memory(memory, hidden, batch, seq_len, out, states, ws, live_);
      }
    } else {  // a layer whose live mask only changes the hashing (the demo layer)
      if (states.empty()) {
        layer_.forward_memory(memory, hidden, batch, seq_len, out, ws);
      } else {
        layer_.forward_memory(memory, hidden, batch, seq_len, out, states, ws);
      }
    }
  }
  void forward(const Ticket& ticket, std::span<const Scalar> hidden, std::span<Scalar> out,
               Workspace& ws) {
    forward(ticket, hidden, out, {}, ws);
  }

  /// prefetch + forward in one call (no other ticket may be in flight).
  void forward_tokens(std::span<const int64_t> input_ids, std::span<const Scalar> hidden,
                      int64_t batch, int64_t seq_len, std::span<Scalar> out,
                      std::span<State* const> states, Workspace& ws) {
    ENGRAM_CHECK(count_ == 0, kWho, ": forward_tokens with ", count_, " tickets in flight");
    forward(prefetch(input_ids, batch, seq_len, states), hidden, out, states, ws);
  }

  /// Waits for the oldest ticket's rows (fetching them now for SyncPrefetch) and decodes them, so
  /// that its forward() only runs the layer (to charge the wait where it belongs). On a tier error
  /// the ticket is dropped and the error rethrown.
  void stage(const Ticket& ticket) {
    Pending& p = front(ticket);
    if (p.staged) return;
    if (std::exception_ptr error = drain_front(); error) {
      pop_front();
      std::rethrow_exception(error);
    }
    p.staged = true;
    if constexpr (Policy::kSubmitOnPrefetch) submit_pieces();
  }

  /// Drops the oldest ticket without running the layer (its fetch is waited for; errors ignored).
  void discard(const Ticket& ticket) {
    if (!front(ticket).staged) drain_front();
    pop_front();
  }

 private:
  static constexpr std::string_view kWho = "TieredLayer";

  struct Pending {
    uint64_t sequence = 0;
    int64_t batch = 0, seq_len = 0, tokens = 0;
    int64_t pieces = 0, submitted = 0;
    bool staged = false;            // its rows are decoded in staged_
    std::vector<uint8_t> live;      // the live mask given to prefetch (empty: all live)
    std::vector<int64_t> hash_ids;  // [max_tokens, cols]
    std::span<int64_t> ids(int64_t cols) {
      return {hash_ids.data(), static_cast<size_t>(tokens * cols)};
    }
  };

  Pending& reserve_ticket(int64_t batch, int64_t seq_len) {
    ENGRAM_CHECK(batch >= 0 && seq_len >= 0 && batch * seq_len <= max_tokens_, kWho,
                 ": a batch of ", batch, " x ", seq_len, " tokens exceeds max_tokens ",
                 max_tokens_);
    ENGRAM_CHECK(count_ < plan_.tickets, kWho, ": ", count_, " tickets in flight, the ",
                 Policy::kName, " strategy allows ", plan_.tickets,
                 "; forward (or discard) the oldest first");
    Pending& p = pending_[static_cast<size_t>((head_ + count_) % plan_.tickets)];
    p.batch = batch;
    p.seq_len = seq_len;
    p.tokens = batch * seq_len;
    p.pieces = (p.tokens + plan_.slot_tokens - 1) / plan_.slot_tokens;
    p.submitted = 0;
    p.staged = false;
    return p;
  }

  Ticket commit_ticket(Pending& p) {
    p.sequence = ++sequence_;
    ++count_;
    if constexpr (Policy::kSubmitOnPrefetch) submit_pieces();
    return Ticket(p.sequence);
  }

  Pending& front(const Ticket& ticket) {
    ENGRAM_CHECK(ticket.valid(), kWho, ": invalid ticket");
    ENGRAM_CHECK(count_ > 0 && pending_[static_cast<size_t>(head_)].sequence == ticket.sequence_,
                 kWho, ": tickets are forwarded in prefetch order, once; this one is ",
                 count_ > 0 && ticket.sequence_ > pending_[static_cast<size_t>(head_)].sequence
                     ? "not the oldest in flight"
                     : "already used");
    return pending_[static_cast<size_t>(head_)];
  }

  // Submits pieces in FIFO order (oldest ticket first) while staging slots are free.
  void submit_pieces() {
    for (int i = 0; i < count_ && pieces_in_flight_ < plan_.slots; ++i) {
      Pending& p = pending_[static_cast<size_t>((head_ + i) % plan_.tickets)];
      while (p.submitted < p.pieces && pieces_in_flight_ < plan_.slots) {
        const int64_t first = p.submitted * plan_.slot_tokens;
        const int64_t n = std::min(plan_.slot_tokens, p.tokens - first);
        const size_t at = static_cast<size_t>((piece_head_ + pieces_in_flight_) % plan_.slots);
        pieces_[at] = memory_.submit(
            std::span<const int64_t>(p.hash_ids)
                .subspan(static_cast<size_t>(first * cols_), static_cast<size_t>(n * cols_)));
        ++pieces_in_flight_;
        ++p.submitted;
      }
      if (p.submitted < p.pieces) return;
    }
  }

  // Waits for (or fetches) every piece of the oldest ticket into staged_. Returns the first error
  // of its pieces (the rest are not fetched).
  std::exception_ptr drain_front() {
    Pending& p = pending_[static_cast<size_t>(head_)];
    std::exception_ptr error;
    for (int64_t piece = 0; piece < p.pieces; ++piece) {
      if (p.submitted <= piece) {
        if (error) break;  // the batch failed: fetch no more of it
        submit_pieces();
      }
      const int64_t first = piece * plan_.slot_tokens;
      const int64_t n = std::min(plan_.slot_tokens, p.tokens - first);
      const auto ticket = pieces_[static_cast<size_t>(piece_head_)];
      piece_head_ = (piece_head_ + 1) % plan_.slots;
      --pieces_in_flight_;
      try {
        fetched_ += memory_.wait(
            ticket, std::span<float>(staged_).subspan(static_cast<size_t>(first * memory_dim_),
                                                      static_cast<size_t>(n * memory_dim_)));
      } catch (...) {
        if (!error) error = std::current_exception();
      }
    }
    return error;
  }

  // Drops the oldest ticket and hands the staging slots to the next ones.
  void pop_front() {
    Pending& p = pending_[static_cast<size_t>(head_)];
    p.sequence = 0;
    p.staged = false;
    head_ = (head_ + 1) % plan_.tickets;
    --count_;
    if constexpr (Policy::kSubmitOnPrefetch) submit_pieces();
  }

  std::span<const Scalar> staged(int64_t tokens) {
    const auto size = static_cast<size_t>(tokens * memory_dim_);
    if constexpr (std::is_same_v<Scalar, float>) {
      return {staged_.data(), size};
    } else {
      std::copy_n(staged_.begin(), size, converted_.begin());
      return {converted_.data(), size};
    }
  }

  Layer layer_;
  Policy policy_;
  int64_t cols_, memory_dim_, max_tokens_;
  StagingPlan plan_;
  Memory memory_;
  std::vector<Pending> pending_;  // ring of plan_.tickets; [head_, head_ + count_) in flight
  int head_ = 0, count_ = 0;
  uint64_t sequence_ = 0;
  std::vector<typename Memory::Ticket> pieces_;  // ring of plan_.slots submitted pieces
  int piece_head_ = 0, pieces_in_flight_ = 0;
  std::vector<float> staged_;      // [max_tokens, memory_dim] decoded rows
  std::vector<Scalar> converted_;  // the same as Scalar when Scalar is not float
  std::vector<uint8_t> live_;      // the live mask of the ticket being forwarded
  FetchReport fetched_;
};

}  // namespace engram
