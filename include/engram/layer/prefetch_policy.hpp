// engram/layer/prefetch_policy.hpp: prefetch strategies of a TieredLayerT (tiered_layer.hpp):
// when a batch's rows are fetched from the tier, and how much staging memory that may take.
//
//   SyncPrefetch{}                      fetch inside forward() on the caller's thread
//   LookAheadPrefetch{.batches = k,     fetch on a worker as soon as prefetch() is called; up to k
//                     .staging_bytes}   batches in flight; staged rows never exceed staging_bytes
//
// A strategy turns (largest batch in tokens, bytes of one token's rows = cols * row_bytes) into a
// StagingPlan: `tickets` batches prefetched and not yet forwarded, `slots` staging buffers of
// `slot_tokens` tokens each. A batch longer than slot_tokens is fetched in pieces of slot_tokens
// tokens, each taking a slot as one frees up, so a budget smaller than one batch still makes
// progress (with less overlap); a budget below one token's rows is an engram::Error naming both
// sizes. Pieces are submitted in FIFO order across batches: the oldest batch's pieces come first.
//
// The PrefetchStrategy concept: `typename P::Fetch` (prefetch::Synchronous or Asynchronous,
// memory/tiers/prefetch.hpp), `P::kSubmitOnPrefetch`, `P::kName` and `plan(max_tokens,
// token_bytes)`. Strategies are plain values (copyable, no state); thread safety is the
// TieredLayerT's.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <string_view>

#include "engram/error.hpp"
#include "engram/memory/tiers/prefetch.hpp"

namespace engram {

/// How a tiered layer stages rows: see the banner.
struct StagingPlan {
  int tickets = 1;          ///< batches prefetched and not yet forwarded, at most
  int slots = 1;            ///< staging buffers
  int64_t slot_tokens = 0;  ///< tokens one staging buffer holds (a batch's piece)
};

namespace detail {
/// Slots and their size for a staging budget of `budget_tokens` tokens (0: whole batches).
inline StagingPlan staging_plan(std::string_view who, int tickets, int slots, int64_t max_tokens,
                                int64_t token_bytes, int64_t staging_bytes) {
  ENGRAM_CHECK(tickets >= 1 && tickets <= 64, who, ": batches in flight must be in [1, 64], found ",
               tickets);
  ENGRAM_CHECK(max_tokens >= 1 && token_bytes >= 1, who, ": max_tokens (", max_tokens,
               ") and the bytes of one token's rows (", token_bytes, ") must be positive");
  ENGRAM_CHECK(staging_bytes >= 0, who, ": staging_bytes must be >= 0, found ", staging_bytes);
  if (staging_bytes == 0) return {tickets, slots, max_tokens};
  const int64_t budget_tokens = staging_bytes / token_bytes;
  ENGRAM_CHECK(budget_tokens >= 1, who, ": a staging budget of ", staging_bytes,
               " bytes holds no token (one token's rows take ", token_bytes,
               " bytes: columns x row bytes)");
  const int usable = static_cast<int>(std::min<int64_t>(slots, budget_tokens));
  return {tickets, usable, std::min(max_tokens, budget_tokens / usable)};
}
}  // namespace detail

/// Fetch on forward: prefetch() only hashes; forward() fetches the rows on the caller's thread.
struct SyncPrefetch {
  using Fetch = prefetch::Synchronous;
  static constexpr bool kSubmitOnPrefetch = false;
  static constexpr std::string_view kName = "sync";
  int batches = 1;            ///< batches hashed ahead (prefetched, not yet forwarded)
  int64_t staging_bytes = 0;  ///< 0: one whole batch; else fetch in pieces within this budget

  StagingPlan plan(int64_t max_tokens, int64_t token_bytes) const {
    return detail::staging_plan("SyncPrefetch", batches, 1, max_tokens, token_bytes, staging_bytes);
  }
};

/// Look-ahead: prefetch() queues the fetch on a worker at once; up to `batches` in flight.
struct LookAheadPrefetch {
  using Fetch = prefetch::Asynchronous;
  static constexpr bool kSubmitOnPrefetch = true;
  static constexpr std::string_view kName = "look-ahead";
  int batches = 2;            ///< k: batches prefetched and not yet forwarded
  int64_t staging_bytes = 0;  ///< 0: k whole batches; else at most this many bytes staged

  StagingPlan plan(int64_t max_tokens, int64_t token_bytes) const {
    return detail::staging_plan("LookAheadPrefetch", batches, batches, max_tokens, token_bytes,
                                staging_bytes);
  }
};

/// A prefetch strategy of TieredLayerT (see the banner).
template <class P>
concept PrefetchStrategy = std::copyable<P> && PrefetchPolicy<typename P::Fetch> &&
    requires(const P& p, int64_t n) {
  { P::kSubmitOnPrefetch } -> std::convertible_to<bool>;
  { P::kName } -> std::convertible_to<std::string_view>;
  { p.plan(n, n) } -> std::same_as<StagingPlan>;
};

}  // namespace engram
