// engram/memory/tiers/fallback_tier.hpp: a RowTier that serves rows from a fast but volatile
// primary tier (a remote pool, remote_tier.hpp) and falls through to a durable tier (the packed
// file through DirectIOTier) for the rows the primary could not serve.
//
// One fetch, ids [n], out:
//   primary.fetch_partial(ids, out)          // writes the rows it has; missing() lists the rest
//   m = primary.missing()                     // batch positions: page missing, server dead or
//                                             // slow, value corrupted
//   if m: fallback.fetch(ids[m], staging)     // one batch; throws on a real I/O error
//         out[m[j]] = staging[j]
//   report: rows = n, rows_from_storage = n, rows_from_fallback = |m|, rows_from_remote as the
//           primary reported it (n - |m| for a RemoteTier), pages_read / bytes_read summed over
//           both tiers
// Usual stack: CachedTier<FallbackTierT<RemoteTier, DirectIOTier>> (hot rows in RAM, then the
// pool, then the file).
//
// Guarantees: all or nothing (row_tier.hpp): the primary never throws for its medium's failures
// (it reports missing rows), the fallback's errors propagate for the batch. Rows are exactly the
// table's rows whatever the primary does, since the primary verifies what it returns and the
// fallback verifies what it reads. Steady-state fetches do not allocate.
// Threads: one fetch at a time (both tiers are called from the fetching thread); stats() may be
// read from any thread.
#pragma once

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engram/error.hpp"
#include "engram/memory/tiers/row_tier.hpp"

namespace engram {

/// A RowTier that can also serve part of a batch: fetch_partial writes the rows it has and
/// missing() lists (ascending) the batch positions it did not write.
template <class T>
concept PartialRowTier = RowTier<T> &&
    requires(T& tier, const T& const_tier, std::span<const int64_t> ids, std::span<std::byte> out) {
  { tier.fetch_partial(ids, out) } -> std::same_as<FetchReport>;
  { const_tier.missing() } -> std::convertible_to<std::span<const int64_t>>;
};

/// Cumulative counters of a FallbackTierT (a snapshot).
struct FallbackStats {
  int64_t batches = 0;
  int64_t rows_from_primary = 0;
  int64_t rows_from_fallback = 0;
  int64_t batches_with_fallback = 0;  ///< batches in which the primary missed at least one row
};

/// Primary tier with a durable fallback (see the banner). Both tiers are owned and constructed in
/// place (neither needs to be movable).
template <PartialRowTier Primary, RowTier Fallback>
class FallbackTierT {
 public:
  /// FallbackTierT(std::piecewise_construct, std::forward_as_tuple(primary args...),
  ///               std::forward_as_tuple(fallback args...))
  template <class... PrimaryArgs, class... FallbackArgs>
  FallbackTierT(std::piecewise_construct_t, std::tuple<PrimaryArgs...> primary_args,
                std::tuple<FallbackArgs...> fallback_args)
      : primary_(std::make_from_tuple<Primary>(std::move(primary_args))),
        fallback_(std::make_from_tuple<Fallback>(std::move(fallback_args))) {
    ENGRAM_CHECK(primary_.num_rows() == fallback_.num_rows() &&
                     primary_.row_bytes() == fallback_.row_bytes(),
                 "fallback tier: primary ", primary_.describe(), " has ", primary_.num_rows(),
                 " rows of ", primary_.row_bytes(), " bytes, fallback ", fallback_.describe(),
                 " has ", fallback_.num_rows(), " rows of ", fallback_.row_bytes());
  }
  FallbackTierT(const FallbackTierT&) = delete;
  FallbackTierT& operator=(const FallbackTierT&) = delete;

  int64_t num_rows() const noexcept { return primary_.num_rows(); }
  int64_t row_bytes() const noexcept { return primary_.row_bytes(); }
  std::string describe() const {
    return primary_.describe() + ", falling back to " + fallback_.describe();
  }
  Primary& primary() noexcept { return primary_; }
  Fallback& fallback() noexcept { return fallback_; }
  const Primary& primary() const noexcept { return primary_; }
  const Fallback& fallback() const noexcept { return fallback_; }

  FallbackStats stats() const noexcept {
    return {batches_.load(std::memory_order_relaxed), from_primary_.load(std::memory_order_relaxed),
            from_fallback_.load(std::memory_order_relaxed),
            batches_with_fallback_.load(std::memory_order_relaxed)};
  }

  /// Copies the rows `ids` to `out` (see the banner and row_tier.hpp).
  FetchReport fetch(std::span<const int64_t> ids, std::span<std::byte> out) {
    detail::check_fetch_args("fallback tier", ids, out, num_rows(), row_bytes());
    const size_t n = ids.size();
    FetchReport report = primary_.fetch_partial(ids, out);
    const std::span<const int64_t> missing = primary_.missing();
    const auto rb = static_cast<size_t>(row_bytes());
    if (!missing.empty()) {
      fallback_ids_.resize(missing.size());
      for (size_t j = 0; j < missing.size(); ++j)
        fallback_ids_[j] = ids[static_cast<size_t>(missing[j])];
      if (staging_.size() < missing.size() * rb) staging_.resize(missing.size() * rb);
      const FetchReport fallback =
          fallback_.fetch(std::span<const int64_t>(fallback_ids_),
                          std::span<std::byte>(staging_.data(), missing.size() * rb));
      for (size_t j = 0; j < missing.size(); ++j)
        std::memcpy(out.data() + static_cast<size_t>(missing[j]) * rb, staging_.data() + j * rb,
                    rb);
      report.bytes_read += fallback.bytes_read;
      report.pages_read += fallback.pages_read;
      batches_with_fallback_.fetch_add(1, std::memory_order_relaxed);
    }
    const auto from_fallback = static_cast<int64_t>(missing.size());
    report.rows = static_cast<int64_t>(n);
    report.rows_from_storage = static_cast<int64_t>(n);
    report.rows_from_fallback = from_fallback;
    batches_.fetch_add(1, std::memory_order_relaxed);
    from_primary_.fetch_add(static_cast<int64_t>(n) - from_fallback, std::memory_order_relaxed);
    from_fallback_.fetch_add(from_fallback, std::memory_order_relaxed);
    return report;
  }

 private:
  Primary primary_;
  Fallback fallback_;
  std::vector<int64_t> fallback_ids_;
  std::vector<std::byte> staging_;
  std::atomic<int64_t> batches_{0}, from_primary_{0}, from_fallback_{0}, batches_with_fallback_{0};
};

}  // namespace engram
