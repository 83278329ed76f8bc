// engram/memory/tiers/prefetch.hpp: staging of an Engram layer's rows ahead of the layer, so that
// a slow tier (SSD, remote store) overlaps with the transformer blocks that run before it. Row ids
// depend only on the tokens, so they are known early. Design notes: docs/design/memory.md.
//
//   PrefetcherT<Tier> prefetcher(tier, {.max_batch_rows = tokens * cols});
//   auto ticket = prefetcher.submit(row_ids);   // [tokens * cols] global row ids, returns at once
//   ... earlier transformer blocks run ...
//   auto batch = prefetcher.wait(ticket);       // blocks only if the fetch has not finished
//   decode(batch.rows());                       // [tokens * cols, row_bytes] staged records
//
// Policies (PrefetchPolicy): prefetch::Synchronous (fetch inside wait(), no thread) and
// prefetch::Asynchronous (one background worker, FIFO); both give identical rows and reports.
// Staging: `slots` buffers of max_batch_rows x row_bytes; a slot is busy from submit until its
// Batch is destroyed; submit() throws when none is free (it never blocks).
//
// Guarantees: a tier error for a batch is rethrown by wait() for that batch only; no allocation in
// steady state; destruction with batches in flight is clean (Batch objects must die first).
// Thread safety: submit/wait/ready/stats from any thread; the tier is called by one thread at a
// time; a ticket is waited for once (a second wait() throws). TSan-clean.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "engram/error.hpp"
#include "engram/memory/detail/io.hpp"
#include "engram/memory/tiers/row_tier.hpp"

namespace engram {

namespace prefetch {
/// Fetch inside wait(), on the caller's thread.
struct Synchronous {
  static constexpr bool kAsynchronous = false;
  static constexpr std::string_view kName = "synchronous";
};
/// Fetch on a background worker as soon as a batch is submitted.
struct Asynchronous {
  static constexpr bool kAsynchronous = true;
  static constexpr std::string_view kName = "asynchronous";
};
}  // namespace prefetch

/// A prefetch policy: whether fetches run on a worker, and a name for logs.
template <class P>
concept PrefetchPolicy = requires {
  { P::kAsynchronous } -> std::convertible_to<bool>;
  { P::kName } -> std::convertible_to<std::string_view>;
};

/// Sizing of a prefetcher.
struct PrefetchOptions {
  int64_t max_batch_rows = 0;  ///< largest batch (row ids) a submit may carry
  int slots = 2;               ///< staging buffers (batches submitted and not yet released)
};

/// Counters of a prefetcher (a snapshot).
struct PrefetchStats {
  int64_t batches = 0;         ///< batches fetched (successfully or not)
  int64_t failed_batches = 0;  ///< batches whose fetch threw
  int64_t rows = 0;            ///< rows staged by successful batches
  double fetch_seconds = 0;    ///< time spent in the tier's fetch
  double wait_seconds = 0;     ///< time callers spent blocked in wait() (what overlap did not hide)
};

/// Stages batches of rows of `Tier` ahead of use. @tparam Policy prefetch::Asynchronous or
/// prefetch::Synchronous.
template <RowTier Tier, PrefetchPolicy Policy = prefetch::Asynchronous>
class PrefetcherT {
  struct Slot;

 public:
  /// Names a submitted batch; pass it to wait() once.
  class Ticket {
   public:
    Ticket() = default;
    bool valid() const noexcept { return slot_ >= 0; }

   private:
    friend class PrefetcherT;
    Ticket(int slot, uint64_t sequence) : slot_(slot), sequence_(sequence) {}
    int slot_ = -1;
    uint64_t sequence_ = 0;
  };

  /// The staged rows of one batch; releases its staging slot when destroyed (or on release()).
  class Batch {
   public:
    Batch(Batch&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)), slot_(other.slot_) {}
    Batch& operator=(Batch&& other) noexcept {
      if (this != &other) {
        release();
        owner_ = std::exchange(other.owner_, nullptr);
        slot_ = other.slot_;
      }
      return *this;
    }
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;
    ~Batch() { release(); }

    /// Rows in the batch.
    int64_t size() const noexcept { return slot().count; }
    /// The batch's row ids, as submitted.
    std::span<const int64_t> ids() const noexcept {
      return {slot().ids.data(), static_cast<size_t>(slot().count)};
    }
    /// [size(), row_bytes] staged row records.
    std::span<const std::byte> rows() const noexcept {
      return {slot().staging.data(), static_cast<size_t>(slot().count * owner_->row_bytes_)};
    }
    /// Record of the i-th row of the batch.
    const std::byte* row(int64_t i) const noexcept {
      return slot().staging.data() + i * owner_->row_bytes_;
    }
    const FetchReport& report() const noexcept { return slot().report; }
    /// Frees the staging slot now (the batch's rows become invalid).
    void release() noexcept {
      if (owner_ != nullptr) std::exchange(owner_, nullptr)->release_slot(slot_);
    }

   private:
    friend class PrefetcherT;
    Batch(PrefetcherT* owner, int slot) : owner_(owner), slot_(slot) {}
    const Slot& slot() const noexcept { return owner_->slots_[static_cast<size_t>(slot_)]; }
    PrefetcherT* owner_ = nullptr;
    int slot_ = 0;
  };

  /// @param tier     the tier to fetch from; must outlive the prefetcher
  /// @param options  largest batch and number of staging slots (>= 1)
  PrefetcherT(Tier& tier, PrefetchOptions options)
      : tier_(tier), row_bytes_(tier.row_bytes()), max_batch_rows_(options.max_batch_rows) {
    ENGRAM_CHECK(options.max_batch_rows >= 0, "prefetcher: max_batch_rows must be >= 0, found ",
                 options.max_batch_rows);
    ENGRAM_CHECK(options.slots >= 1 && options.slots <= 64,
                 "prefetcher: slots must be in [1, 64], found ", options.slots);
    slots_ = std::vector<Slot>(static_cast<size_t>(options.slots));
    for (Slot& s : slots_) {
      s.ids.resize(static_cast<size_t>(max_batch_rows_));
      s.staging = detail::IoBuffer(std::max<int64_t>(1, max_batch_rows_ * row_bytes_), 64);
    }
    queue_.assign(slots_.size(), -1);
    if constexpr (Policy::kAsynchronous) worker_ = std::thread([this] { worker_loop(); });
  }
  PrefetcherT(const PrefetcherT&) = delete;
  PrefetcherT& operator=(const PrefetcherT&) = delete;

  /// Drops batches not started, waits for the one being fetched, joins the worker.
  ~PrefetcherT() {
    if constexpr (Policy::kAsynchronous) {
      {
        std::lock_guard lock(mutex_);
        stop_ = true;
      }
      work_cv_.notify_all();
      worker_.join();
    }
  }

  Tier& tier() noexcept { return tier_; }
  int64_t max_batch_rows() const noexcept { return max_batch_rows_; }
  static constexpr std::string_view policy_name() noexcept { return Policy::kName; }

  /// Queues a batch (copies `ids`); with the asynchronous policy its fetch starts now.
  /// Throws if ids.size() > max_batch_rows or every staging slot is busy.
  Ticket submit(std::span<const int64_t> ids) {
    ENGRAM_CHECK(static_cast<int64_t>(ids.size()) <= max_batch_rows_, "prefetcher: batch of ",
                 ids.size(), " rows exceeds max_batch_rows ", max_batch_rows_);
    std::unique_lock lock(mutex_);
    int free_slot = -1;
    for (size_t s = 0; s < slots_.size() && free_slot < 0; ++s)
      if (slots_[s].state == State::kFree) free_slot = static_cast<int>(s);
    ENGRAM_CHECK(free_slot >= 0, "prefetcher: all ", slots_.size(),
                 " staging slots are busy (batches submitted and not yet waited for and "
                 "released); wait for a batch and release it before submitting another");
    Slot& slot = slots_[static_cast<size_t>(free_slot)];
    std::copy(ids.begin(), ids.end(), slot.ids.begin());
    slot.count = static_cast<int64_t>(ids.size());
    slot.sequence = ++sequence_;
    slot.claimed = false;
    slot.state = State::kQueued;
    if constexpr (Policy::kAsynchronous) {
      queue_[(queue_head_ + queue_size_) % queue_.size()] = free_slot;
      ++queue_size_;
      lock.unlock();
      work_cv_.notify_one();
    }
    return Ticket(free_slot, slot.sequence);
  }

  /// Whether wait(ticket) would return (or throw) without blocking.
  bool ready(const Ticket& ticket) const {
    std::lock_guard lock(mutex_);
    const Slot& slot = checked_slot(ticket);
    return slot.state == State::kDone || slot.state == State::kFailed;
  }

  /// The staged rows of the ticket's batch; blocks until its fetch finished. Rethrows the tier's
  /// error for this batch (its slot is freed then).
  Batch wait(const Ticket& ticket) {
    std::unique_lock lock(mutex_);
    Slot& slot = checked_slot(ticket);
    // The first wait() claims the ticket; a concurrent second one is misuse, named here (it would
    // otherwise get the same batch and release the slot twice, or sleep forever).
    ENGRAM_CHECK(!slot.claimed, "prefetcher: ticket was already waited for (another thread is ",
                 "waiting for it; each ticket is waited for once)");
    slot.claimed = true;
    if constexpr (!Policy::kAsynchronous) {
      if (slot.state == State::kQueued) {
        slot.state = State::kRunning;
        lock.unlock();
        {
          std::lock_guard tier_lock(sync_tier_mutex_);  // one fetch at a time across callers
          run(slot);
        }
        lock.lock();
      }
    }
    if (slot.state == State::kQueued || slot.state == State::kRunning) {
      const auto start = std::chrono::steady_clock::now();
      done_cv_.wait(lock,
                    [&] { return slot.state == State::kDone || slot.state == State::kFailed; });
      wait_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
    }
    if (slot.state == State::kFailed) {
      std::exception_ptr error = std::exchange(slot.error, nullptr);
      slot.state = State::kFree;
      lock.unlock();
      std::rethrow_exception(error);
    }
    slot.state = State::kHeld;
    return Batch(this, ticket.slot_);
  }

  /// Staging slots not in use.
  int free_slots() const {
    std::lock_guard lock(mutex_);
    return static_cast<int>(std::count_if(slots_.begin(), slots_.end(),
                                          [](const Slot& s) { return s.state == State::kFree; }));
  }

  PrefetchStats stats() const {
    std::lock_guard lock(mutex_);
    PrefetchStats s;
    s.batches = batches_;
    s.failed_batches = failed_batches_;
    s.rows = rows_;
    s.fetch_seconds = static_cast<double>(fetch_ns_) * 1e-9;
    s.wait_seconds = static_cast<double>(wait_ns_) * 1e-9;
    return s;
  }

 private:
  enum class State { kFree, kQueued, kRunning, kDone, kFailed, kHeld };
  struct Slot {
    State state = State::kFree;
    uint64_t sequence = 0;
    bool claimed = false;      // a wait() for the current ticket has begun
    std::vector<int64_t> ids;  // capacity max_batch_rows, first `count` valid
    int64_t count = 0;
    detail::IoBuffer staging;
    FetchReport report;
    std::exception_ptr error;
  };

  Slot& checked_slot(const Ticket& ticket) {
    return const_cast<Slot&>(std::as_const(*this).checked_slot(ticket));
  }
  const Slot& checked_slot(const Ticket& ticket) const {
    ENGRAM_CHECK(ticket.slot_ >= 0 && static_cast<size_t>(ticket.slot_) < slots_.size(),
                 "prefetcher: invalid ticket");
    const Slot& slot = slots_[static_cast<size_t>(ticket.slot_)];
    ENGRAM_CHECK(slot.sequence == ticket.sequence_ && slot.state != State::kFree &&
                     slot.state != State::kHeld,
                 "prefetcher: ticket was already waited for (each ticket is waited for once)");
    return slot;
  }

  // Runs the fetch of a slot owned by this thread (state kRunning), then publishes the outcome.
  void run(Slot& slot) {
    const auto start = std::chrono::steady_clock::now();
    std::exception_ptr error;
    FetchReport report;
    try {
      report = tier_.fetch(
          std::span<const int64_t>(slot.ids.data(), static_cast<size_t>(slot.count)),
          std::span<std::byte>(slot.staging.data(), static_cast<size_t>(slot.count * row_bytes_)));
    } catch (...) {
      error = std::current_exception();
    }
    const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::steady_clock::now() - start)
                             .count();
    {
      std::lock_guard lock(mutex_);
      slot.report = report;
      slot.error = std::move(error);
      slot.state = slot.error ? State::kFailed : State::kDone;
      ++batches_;
      if (slot.error) {
        ++failed_batches_;
      } else {
        rows_ += slot.count;
      }
      fetch_ns_ += elapsed;
    }
    done_cv_.notify_all();
  }

  void worker_loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      work_cv_.wait(lock, [&] { return stop_ || queue_size_ > 0; });
      if (stop_) return;
      const int s = queue_[queue_head_];
      queue_head_ = (queue_head_ + 1) % queue_.size();
      --queue_size_;
      Slot& slot = slots_[static_cast<size_t>(s)];
      slot.state = State::kRunning;
      lock.unlock();
      run(slot);
      lock.lock();
    }
  }

  void release_slot(int s) noexcept {
    std::lock_guard lock(mutex_);
    slots_[static_cast<size_t>(s)].state = State::kFree;
  }

  Tier& tier_;
  int64_t row_bytes_;
  int64_t max_batch_rows_;
  std::vector<Slot> slots_;
  std::vector<int> queue_;  // FIFO ring of queued slots (asynchronous policy)
  size_t queue_head_ = 0;
  size_t queue_size_ = 0;
  uint64_t sequence_ = 0;
  bool stop_ = false;
  int64_t batches_ = 0, failed_batches_ = 0, rows_ = 0, fetch_ns_ = 0, wait_ns_ = 0;
  mutable std::mutex mutex_;
  std::mutex sync_tier_mutex_;  // Synchronous: serialises fetches of concurrent wait() callers
  std::condition_variable work_cv_, done_cv_;
  std::thread worker_;
};

/// The common case: asynchronous prefetch.
template <RowTier Tier>
using Prefetcher = PrefetcherT<Tier, prefetch::Asynchronous>;

}  // namespace engram
