// engram/memory/tiers/cached_tier.hpp: a hot-row cache in front of any RowTier, sized in bytes,
// with TinyLFU admission (a count-min sketch; a missed row enters a full cache only when more
// frequent than its victim) and a segmented-LRU main region (20 % probation / 80 % protected).
// Why this policy, and measured hit rates: docs/design/memory.md.
//
// fetch(ids, out) (all-or-nothing, row_tier.hpp):
//   hits   = ids whose row is resident when the batch starts (copied from the cache)
//   misses = the other ids; their distinct rows are fetched from the inner tier in one batch
//            (first-occurrence order), copied to every position, then offered for admission
// A failed inner fetch propagates; no counter changes and nothing of the batch is admitted.
//
// Counters: hits, misses, admissions, rejections, evictions, resident rows.
// Ownership: CachedTier<Inner> owns its inner tier (constructed in place); CachedTier<T&> borrows.
// Guarantees: resident_rows() <= capacity_rows() = capacity_bytes / row_bytes; steady-state
// fetches do not allocate; metadata about 40 bytes per cached row + 16 sketch bytes per row.
// Thread safety: one fetch at a time; stats() and resident_rows() may be read concurrently.
//
//   engram::CachedTier<engram::DirectIOTier> tier({.capacity_bytes = 64 << 20}, "t.engram");
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engram/error.hpp"
#include "engram/memory/tiers/row_tier.hpp"

namespace engram {

/// Sizing of a CachedTier.
struct CacheOptions {
  int64_t capacity_bytes = int64_t{256} << 20;  ///< row bytes the cache may hold
  double protected_fraction = 0.8;              ///< share of capacity for rows hit at least twice
  bool admission = true;       ///< TinyLFU admission; false = admit every miss (plain SLRU)
  int64_t sample_factor = 16;  ///< sketch counters halve every sample_factor x capacity lookups
};

/// Counters of a CachedTier (a snapshot).
struct CacheStats {
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t admissions = 0;
  int64_t rejections = 0;
  int64_t evictions = 0;
  int64_t resident_rows = 0;
  int64_t capacity_rows = 0;
  double hit_rate() const noexcept {
    return hits + misses > 0 ? static_cast<double>(hits) / static_cast<double>(hits + misses) : 0;
  }
};

namespace detail {

inline uint64_t mix64(uint64_t x) noexcept {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

/// Count-min sketch with 4 rows of 8-bit counters saturating at 15, conservative update and
/// periodic halving (TinyLFU's "reset").
class FrequencySketch {
 public:
  void init(int64_t capacity_rows, int64_t sample_factor) {
    width_ = std::bit_ceil(static_cast<uint64_t>(std::max<int64_t>(16, 4 * capacity_rows)));
    counters_.assign(4 * width_, 0);
    sample_size_ = std::max<int64_t>(16, sample_factor * std::max<int64_t>(1, capacity_rows));
    additions_ = 0;
  }
  int estimate(int64_t key) const noexcept {
    const uint64_t h = mix64(static_cast<uint64_t>(key));
    int least = 15;
    for (int r = 0; r < 4; ++r) least = std::min<int>(least, counters_[index(h, r)]);
    return least;
  }
  void increment(int64_t key) noexcept {
    const uint64_t h = mix64(static_cast<uint64_t>(key));
    size_t cells[4];
    int least = 15;
    for (int r = 0; r < 4; ++r) {
      cells[r] = index(h, r);
      least = std::min<int>(least, counters_[cells[r]]);
    }
    if (least < 15)
      for (size_t cell : cells)
        if (counters_[cell] == least) ++counters_[cell];
    if (++additions_ >= sample_size_) {
      for (uint8_t& c : counters_) c = static_cast<uint8_t>(c >> 1);
      additions_ /= 2;
    }
  }

 private:
  size_t index(uint64_t h, int row) const noexcept {
    // Four independent-enough indices from one 64-bit hash: rotate and remix per row.
    const uint64_t g = mix64(h + 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(row + 1));
    return static_cast<size_t>(row) * width_ + static_cast<size_t>(g & (width_ - 1));
  }
  uint64_t width_ = 16;
  std::vector<uint8_t> counters_;
  int64_t sample_size_ = 16;
  int64_t additions_ = 0;
};

/// Open-addressing map row id -> slot (linear probing, backward-shift deletion, no tombstones).
class SlotMap {
 public:
  void init(int64_t capacity) {
    const uint64_t size = std::bit_ceil(static_cast<uint64_t>(std::max<int64_t>(8, 2 * capacity)));
    keys_.assign(size, kEmpty);
    slots_.assign(size, -1);
    mask_ = size - 1;
  }
  int32_t find(int64_t key) const noexcept {
    for (uint64_t i = home(key);; i = (i + 1) & mask_) {
      if (keys_[i] == key) return slots_[i];
      if (keys_[i] == kEmpty) return -1;
    }
  }
  void insert(int64_t key, int32_t slot) noexcept {
    uint64_t i = home(key);
    while (keys_[i] != kEmpty) i = (i + 1) & mask_;
    keys_[i] = key;
    slots_[i] = slot;
  }
  void erase(int64_t key) noexcept {
    uint64_t i = home(key);
    while (keys_[i] != key) i = (i + 1) & mask_;
    // Backward shift: pull later entries of the probe run into the hole if their home allows.
    for (uint64_t j = (i + 1) & mask_; keys_[j] != kEmpty; j = (j + 1) & mask_) {
      const uint64_t h = home(keys_[j]);
      if (((j - h) & mask_) >= ((j - i) & mask_)) {
        keys_[i] = keys_[j];
        slots_[i] = slots_[j];
        i = j;
      }
    }
    keys_[i] = kEmpty;
    slots_[i] = -1;
  }

 private:
  static constexpr int64_t kEmpty = -1;
  uint64_t home(int64_t key) const noexcept { return mix64(static_cast<uint64_t>(key)) & mask_; }
  std::vector<int64_t> keys_;
  std::vector<int32_t> slots_;
  uint64_t mask_ = 0;
};

}  // namespace detail

/// A TinyLFU + SLRU row cache in front of `Inner` (owned). @tparam Inner any RowTier.
template <RowTier Inner>
class CachedTier {
 public:
  /// @param options  capacity in bytes and policy knobs
  /// @param args     forwarded to Inner's constructor
  template <class... Args>
  explicit CachedTier(CacheOptions options, Args&&... args)
      : inner_(std::forward<Args>(args)...), options_(options) {
    ENGRAM_CHECK(options.capacity_bytes >= 0, "CachedTier: capacity_bytes must be >= 0, found ",
                 options.capacity_bytes);
    ENGRAM_CHECK(options.protected_fraction >= 0 && options.protected_fraction <= 1,
                 "CachedTier: protected_fraction must be in [0, 1], found ",
                 options.protected_fraction);
    row_bytes_ = inner_.row_bytes();
    name_ = "CachedTier over " + inner_.describe();
    capacity_rows_ = std::min<int64_t>(options.capacity_bytes / row_bytes_,
                                       std::min<int64_t>(inner_.num_rows(), INT32_MAX - 1));
    protected_capacity_ =
        static_cast<int64_t>(options.protected_fraction * static_cast<double>(capacity_rows_));
    storage_.resize(static_cast<size_t>(capacity_rows_ * row_bytes_));
    key_.assign(static_cast<size_t>(capacity_rows_), -1);
    prev_.assign(static_cast<size_t>(capacity_rows_), -1);
    next_.assign(static_cast<size_t>(capacity_rows_), -1);
    segment_.assign(static_cast<size_t>(capacity_rows_), kFree);
    map_.init(capacity_rows_);
    sketch_.init(capacity_rows_, options.sample_factor);
  }
  CachedTier(const CachedTier&) = delete;
  CachedTier& operator=(const CachedTier&) = delete;

  int64_t num_rows() const noexcept { return inner_.num_rows(); }
  int64_t row_bytes() const noexcept { return row_bytes_; }
  std::string describe() const {
    return "cache " + std::to_string(capacity_rows_) + " rows (" +
           std::to_string(capacity_rows_ * row_bytes_) + " bytes, " +
           (options_.admission ? "TinyLFU + SLRU" : "SLRU") + ") over " + inner_.describe();
  }
  Inner& inner() noexcept { return inner_; }
  const Inner& inner() const noexcept { return inner_; }
  int64_t capacity_rows() const noexcept { return capacity_rows_; }
  /// Rows currently cached.
  int64_t resident_rows() const noexcept { return resident_.load(std::memory_order_relaxed); }
  /// The sketch's frequency estimate of row `id` (0..15; for tests and diagnostics).
  int estimated_frequency(int64_t id) const noexcept { return sketch_.estimate(id); }
  /// Whether row `id` is cached (does not count as a lookup).
  bool contains(int64_t id) const noexcept { return capacity_rows_ > 0 && map_.find(id) >= 0; }

  CacheStats stats() const noexcept {
    CacheStats s;
    s.hits = hits_.load(std::memory_order_relaxed);
    s.misses = misses_.load(std::memory_order_relaxed);
    s.admissions = admissions_.load(std::memory_order_relaxed);
    s.rejections = rejections_.load(std::memory_order_relaxed);
    s.evictions = evictions_.load(std::memory_order_relaxed);
    s.resident_rows = resident_rows();
    s.capacity_rows = capacity_rows_;
    return s;
  }

  /// Copies the rows `ids` to `out` (see the banner and row_tier.hpp).
  FetchReport fetch(std::span<const int64_t> ids, std::span<std::byte> out) {
    detail::check_fetch_args(name_, ids, out, num_rows(), row_bytes_);
    const size_t n = ids.size();
    const auto rb = static_cast<size_t>(row_bytes_);
    miss_keys_.clear();
    int64_t hits = 0;
    for (size_t i = 0; i < n; ++i) {
      const int64_t id = ids[i];
      if (capacity_rows_ > 0) sketch_.increment(id);
      const int32_t slot = capacity_rows_ > 0 ? map_.find(id) : -1;
      if (slot >= 0) {
        std::memcpy(out.data() + i * rb, storage_.data() + static_cast<size_t>(slot) * rb, rb);
        on_hit(slot);
        ++hits;
      } else {
        miss_keys_.push_back({id, i});
      }
    }
    FetchReport report;
    if (!miss_keys_.empty()) {
      // Distinct missed rows in first-occurrence order: sort by (id, position), keep the first of
      // each id, then order those by position. (std::sort: stable_sort would allocate.)
      std::sort(miss_keys_.begin(), miss_keys_.end(), [](const Miss& a, const Miss& b) {
        return a.id != b.id ? a.id < b.id : a.position < b.position;
      });
      unique_.clear();
      for (size_t j = 0; j < miss_keys_.size(); ++j)
        if (j == 0 || miss_keys_[j].id != miss_keys_[j - 1].id)
          unique_.push_back({miss_keys_[j].id, miss_keys_[j].position});
      std::sort(unique_.begin(), unique_.end(),
                [](const Miss& a, const Miss& b) { return a.position < b.position; });
      unique_ids_.resize(unique_.size());
      for (size_t u = 0; u < unique_.size(); ++u) unique_ids_[u] = unique_[u].id;
      if (staging_.size() < unique_.size() * rb) staging_.resize(unique_.size() * rb);

      report = inner_.fetch(std::span<const int64_t>(unique_ids_),
                            std::span<std::byte>(staging_.data(), unique_.size() * rb));

      // Scatter: for each missed position, its row's index in unique_ (both orders known).
      for (size_t u = 0; u < unique_.size(); ++u) unique_[u].position = u;  // reuse as rank
      std::sort(unique_.begin(), unique_.end(),
                [](const Miss& a, const Miss& b) { return a.id < b.id; });
      size_t u = 0;
      for (const Miss& m : miss_keys_) {
        while (unique_[u].id != m.id) ++u;
        std::memcpy(out.data() + m.position * rb, staging_.data() + unique_[u].position * rb, rb);
      }
      for (size_t r = 0; r < unique_ids_.size(); ++r)
        if (capacity_rows_ > 0) admit(unique_ids_[r], staging_.data() + r * rb);
    }
    report.rows = static_cast<int64_t>(n);
    report.rows_from_cache = hits;
    hits_.fetch_add(hits, std::memory_order_relaxed);
    misses_.fetch_add(static_cast<int64_t>(n) - hits, std::memory_order_relaxed);
    return report;
  }

 private:
  enum Segment : uint8_t { kFree, kProbation, kProtected };
  struct Miss {
    int64_t id;
    size_t position;
  };
  struct List {
    int32_t head = -1;  // most recently used
    int32_t tail = -1;  // least recently used
    int64_t size = 0;
  };

  List& list(Segment s) noexcept { return s == kProtected ? protected_ : probation_; }

  void unlink(int32_t slot) noexcept {
    List& l = list(static_cast<Segment>(segment_[slot]));
    const int32_t p = prev_[slot], q = next_[slot];
    (p >= 0 ? next_[p] : l.head) = q;
    (q >= 0 ? prev_[q] : l.tail) = p;
    prev_[slot] = next_[slot] = -1;
    --l.size;
  }
  void push_front(Segment s, int32_t slot) noexcept {
    List& l = list(s);
    segment_[slot] = s;
    prev_[slot] = -1;
    next_[slot] = l.head;
    if (l.head >= 0) prev_[l.head] = slot;
    l.head = slot;
    if (l.tail < 0) l.tail = slot;
    ++l.size;
  }

  void on_hit(int32_t slot) noexcept {
    unlink(slot);
    push_front(kProtected, slot);
    while (protected_.size > protected_capacity_ && protected_.tail >= 0) {
      const int32_t demoted = protected_.tail;
      unlink(demoted);
      push_front(kProbation, demoted);
    }
  }

  void admit(int64_t id, const std::byte* row) noexcept {
    int32_t slot;
    const int64_t resident = resident_.load(std::memory_order_relaxed);
    if (resident < capacity_rows_) {
      slot = static_cast<int32_t>(resident);  // slots fill in order, never freed afterwards
      resident_.store(resident + 1, std::memory_order_relaxed);
    } else {
      const int32_t victim = probation_.tail >= 0 ? probation_.tail : protected_.tail;
      if (options_.admission && sketch_.estimate(id) <= sketch_.estimate(key_[victim])) {
        rejections_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      unlink(victim);
      map_.erase(key_[victim]);
      evictions_.fetch_add(1, std::memory_order_relaxed);
      slot = victim;
    }
    key_[slot] = id;
    map_.insert(id, slot);
    std::memcpy(storage_.data() + static_cast<size_t>(slot) * static_cast<size_t>(row_bytes_), row,
                static_cast<size_t>(row_bytes_));
    push_front(kProbation, slot);
    admissions_.fetch_add(1, std::memory_order_relaxed);
  }

  Inner inner_;
  CacheOptions options_;
  std::string name_;
  int64_t row_bytes_ = 1;
  int64_t capacity_rows_ = 0;
  int64_t protected_capacity_ = 0;
  std::vector<std::byte> storage_;
  std::vector<int64_t> key_;
  std::vector<int32_t> prev_, next_;
  std::vector<uint8_t> segment_;
  List probation_, protected_;
  detail::SlotMap map_;
  detail::FrequencySketch sketch_;
  // Per-fetch scratch, grown to the largest batch and reused.
  std::vector<Miss> miss_keys_, unique_;
  std::vector<int64_t> unique_ids_;
  std::vector<std::byte> staging_;
  std::atomic<int64_t> hits_{0}, misses_{0}, admissions_{0}, rejections_{0}, evictions_{0},
      resident_{0};
};

}  // namespace engram
