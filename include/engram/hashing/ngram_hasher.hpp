// engram/hashing/ngram_hasher.hpp: multi-head N-gram hashing of token ids into Engram table rows.
//
// NgramHasherT<Policy> maps token ids [B, T] (int64 or int32) of layer `layer_id` to row ids
// [B, T, (N - 1) * H] (N = max_ngram_size, H = n_head_per_ngram; orders outer, heads inner):
//
//   x[t]      = live[t] ? c(ids[t]) : pad            pad = lookup[pad_id]; x[t] = pad for t < 0
//   c(id)     = lookup[id], or id itself when id < 0 (the reference compresses only ids >= 0, so a
//               negative id, e.g. a -1 pad, is hashed as it is; DeadTokenRule::kCumulative, V4.1's
//               rule, takes ids in [0, lookup size) only)
//   out[t][c] = Policy row of the n-gram x[t-n+1..t] for head c, in [0, primes[c])
//
// NumpyMultiplyXor (default) is bit-exact with DeepSeek's reference: odd multipliers from
// default_rng(seed + 10007 * layer_id), int64 multiply-XOR, floor modulo by each head's prime.
// Other policies plug in through the NgramHashPolicy concept (Xxh3Hash, xxh3_policy.hpp). Dead
// tokens (live mask) read the pad id (DeadTokenRule); hash_chunk streams through NgramHashState,
// chunked == whole. hash_chunk_reference is the scalar spec; the AVX-512 bodies live in
// hashing/detail/multiply_xor_x86.hpp. Errors (engram::Error) are thrown before anything is
// written. Ownership: the hasher copies or shares `lookup` and owns the rest; const members are
// thread-safe. Pseudocode, dead-token rules and kernels in detail: docs/design/hashing.md.
//
//   engram::NgramHasher hasher(config, lookup, /*layer_id=*/15);
//   std::vector<int64_t> rows(B * T * hasher.num_columns());
//   hasher.hash(ids, B, T, rows);                     // ids: int64 or int32, [B, T]
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstdint>
#include <limits>
#include <memory>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "engram/config.hpp"
#include "engram/error.hpp"
#include "engram/hashing/detail/multiply_xor_x86.hpp"
#include "engram/hashing/fast_mod.hpp"
#include "engram/hashing/hash_state.hpp"
#include "engram/hashing/numpy_random.hpp"
#include "engram/hashing/primes.hpp"

namespace engram {

/// What a hash policy is constructed from (all views are valid during construction only).
struct NgramHashContext {
  const EngramConfig& config;
  int64_t layer_id;
  int64_t compressed_vocab_size;    ///< C = max(lookup) + 1
  std::span<const int64_t> primes;  ///< one table size per column, (N - 1) * H
};

/// A policy names itself (for benchmarks and messages).
template <class P>
concept NgramHashPolicyNamed = requires {
  { P::kName } -> std::convertible_to<std::string_view>;
};

/// A policy is configured once per layer, from an NgramHashContext, and is copyable.
template <class P>
concept NgramHashPolicyConfigurable =
    std::copy_constructible<P> && std::constructible_from<P, const NgramHashContext&>;

/// The kernels: for `count` positions, `x` points at the compressed id of the first one, with the
/// N - 1 ids before it readable at x[-1] .. x[-(N-1)]; `out` receives count * (N - 1) * H row ids,
/// position-major. hash_rows is the fast path, hash_rows_reference the plain scalar spec; both are
/// noexcept (inputs were validated) and must agree exactly.
// clang-format off
template <class P>
concept NgramHashPolicyKernels =
    requires(const P& policy, const int64_t* x, int64_t count, int64_t* out) {
      { policy.hash_rows(x, count, out) } noexcept;
      { policy.hash_rows_reference(x, count, out) } noexcept;
    };
// clang-format on

/// A hash policy for NgramHasherT.
template <class P>
concept NgramHashPolicy =
    NgramHashPolicyNamed<P> && NgramHashPolicyConfigurable<P> && NgramHashPolicyKernels<P>;

/// Token id element types accepted by the hasher (int64 and int32 in practice).
template <class T>
concept NgramTokenId = std::integral<T> && !std::same_as<std::remove_cv_t<T>, bool>;

/// A contiguous sized range of token ids (std::vector, std::span, std::array, ...).
template <class R>
concept NgramTokenIdRange = std::ranges::contiguous_range<const R&> &&
    std::ranges::sized_range<const R&> && NgramTokenId<std::ranges::range_value_t<const R&>>;

/// Reference multipliers of a layer: default_rng(seed + 10007 * layer_id).integers(0,
/// (INT64_MAX // C) // 2, size=N, dtype=int64) * 2 + 1. Throws when the bound is below 1 or the
/// NumPy seed would be negative or overflow.
inline std::vector<int64_t> engram_multipliers(const EngramConfig& config, int64_t layer_id,
                                               int64_t compressed_vocab_size) {
  ENGRAM_CHECK(config.max_ngram_size >= 2 && config.max_ngram_size <= 64,
               "engram_multipliers: field 'max_ngram_size' must be in [2, 64], found ",
               config.max_ngram_size);
  ENGRAM_CHECK(compressed_vocab_size >= 1,
               "engram_multipliers: compressed vocabulary size must be positive, found ",
               compressed_vocab_size);
  const int64_t bound = std::numeric_limits<int64_t>::max() / compressed_vocab_size / 2;
  ENGRAM_CHECK(bound >= 1,
               "engram_multipliers: compressed vocabulary size C = ", compressed_vocab_size,
               " is too large: the multiplier bound (INT64_MAX // C) // 2 is below 1");
  int64_t seed = 0;
  ENGRAM_CHECK(!__builtin_mul_overflow(layer_id, int64_t{10007}, &seed) &&
                   !__builtin_add_overflow(seed, config.seed, &seed) && seed >= 0,
               "engram_multipliers: seed + 10007 * layer_id (seed ", config.seed, ", layer ",
               layer_id, ") must be a non-negative 64-bit integer (a NumPy seed)");
  numpy_random::Generator rng = numpy_random::default_rng(static_cast<uint64_t>(seed));
  std::vector<int64_t> multipliers =
      rng.integers(0, bound, static_cast<size_t>(config.max_ngram_size));
  for (int64_t& m : multipliers) m = m * 2 + 1;  // < INT64_MAX: m < bound <= INT64_MAX / 2
  return multipliers;
}

/// The reference hash: per-layer odd multipliers, multiply-XOR over the n-gram, floor modulo by
/// each head's prime. Bit-exact with engram_ref.py / the official demo (checkpoint-compatible).
class NumpyMultiplyXor {
 public:
  static constexpr std::string_view kName = "numpy_multiply_xor";

  explicit NumpyMultiplyXor(const NgramHashContext& context)
      : max_ngram_size_(context.config.max_ngram_size),
        heads_(context.config.n_head_per_ngram),
        lane_heads_((heads_ + kLanes - 1) / kLanes * kLanes),
        multipliers_(
            engram_multipliers(context.config, context.layer_id, context.compressed_vocab_size)),
        primes_(context.primes.begin(), context.primes.end()) {
    ENGRAM_CHECK(static_cast<int64_t>(primes_.size()) == (max_ngram_size_ - 1) * heads_,
                 "NumpyMultiplyXor: expected ", (max_ngram_size_ - 1) * heads_, " primes, found ",
                 primes_.size());
    mods_.reserve(primes_.size());
    for (int64_t p : primes_) mods_.emplace_back(static_cast<uint64_t>(p));
    // Per-order lanes padded to a multiple of 8 heads (padding repeats the order's first head).
    const size_t lanes = static_cast<size_t>((max_ngram_size_ - 1) * lane_heads_);
    lane_divisor_.resize(lanes);
    lane_magic_.resize(lanes);
    lane_adjust_.resize(lanes);
    for (int64_t order = 0; order < max_ngram_size_ - 1; ++order)
      for (int64_t lane = 0; lane < lane_heads_; ++lane) {
        const FastMod& m = mods_[static_cast<size_t>(order * heads_ + (lane < heads_ ? lane : 0))];
        const size_t i = static_cast<size_t>(order * lane_heads_ + lane);
        lane_divisor_[i] = m.divisor();
        lane_magic_[i] = m.magic();
        lane_adjust_[i] = m.negative_adjust();
      }
  }

  /// The N odd multipliers of this layer (m[k] multiplies the id k positions back).
  std::span<const int64_t> multipliers() const noexcept { return multipliers_; }

  /// Fast path: AVX-512 when compiled with AVX512DQ, else hash_rows_scalar.
  void hash_rows(const int64_t* x, int64_t count, int64_t* out) const noexcept {
#if ENGRAM_HASHING_HAVE_AVX512
    hash_rows_avx512(x, count, out);
#else
    hash_rows_scalar(x, count, out);
#endif
  }

  /// Portable fast path: division-free FastMod, one position at a time.
  void hash_rows_scalar(const int64_t* x, int64_t count, int64_t* out) const noexcept {
    const int64_t columns = (max_ngram_size_ - 1) * heads_;
    const FastMod* mods = mods_.data();
    const int64_t* m = multipliers_.data();
    for (int64_t t = 0; t < count; ++t) {
      const int64_t* xt = x + t;
      int64_t* row = out + t * columns;
      uint64_t mix = static_cast<uint64_t>(xt[0]) * static_cast<uint64_t>(m[0]);
      for (int64_t k = 1; k < max_ngram_size_; ++k) {
        mix ^= static_cast<uint64_t>(xt[-k]) * static_cast<uint64_t>(m[k]);
        const int64_t base = (k - 1) * heads_;
        for (int64_t h = 0; h < heads_; ++h)
          row[base + h] = mods[base + h].floor_mod(static_cast<int64_t>(mix));
      }
    }
  }

#if ENGRAM_HASHING_HAVE_AVX512
  /// AVX-512 path (hashing/detail/multiply_xor_x86.hpp): kernels specialised on (N - 1, H / 8)
  /// for N <= 5 and H <= 16, hash_rows_avx512_generic for the other shapes.
  void hash_rows_avx512(const int64_t* x, int64_t count, int64_t* out) const noexcept {
    detail::multiply_xor_avx512(lanes(), x, count, out);
  }

  /// AVX-512 path for any shape (constants loaded per chunk).
  void hash_rows_avx512_generic(const int64_t* x, int64_t count, int64_t* out) const noexcept {
    detail::multiply_xor_avx512_generic(lanes(), x, count, out);
  }
#endif

  /// The spec: int64 wrapping multiply-XOR and `%` floor modulo, straight from the reference.
  void hash_rows_reference(const int64_t* x, int64_t count, int64_t* out) const noexcept {
    const int64_t columns = (max_ngram_size_ - 1) * heads_;
    for (int64_t t = 0; t < count; ++t) {
      for (int64_t n = 2; n <= max_ngram_size_; ++n) {
        uint64_t mix = 0;  // unsigned: int64 multiply wraps like NumPy's
        for (int64_t k = 0; k < n; ++k)
          mix ^= static_cast<uint64_t>(x[t - k]) * static_cast<uint64_t>(multipliers_[k]);
        for (int64_t h = 0; h < heads_; ++h) {
          const int64_t c = (n - 2) * heads_ + h;
          out[t * columns + c] =
              floor_mod_reference(static_cast<int64_t>(mix), primes_[static_cast<size_t>(c)]);
        }
      }
    }
  }

 private:
  static constexpr int64_t kLanes = detail::kMultiplyXorLanes;

  /// The per-lane constants the AVX-512 kernels read.
  detail::MultiplyXorLanes lanes() const noexcept {
    return {max_ngram_size_,      heads_,
            lane_heads_,          multipliers_.data(),
            lane_divisor_.data(), lane_magic_.data(),
            lane_adjust_.data()};
  }

  int64_t max_ngram_size_;
  int64_t heads_;
  int64_t lane_heads_;  ///< heads rounded up to a multiple of kLanes
  std::vector<int64_t> multipliers_;
  std::vector<int64_t> primes_;
  std::vector<FastMod> mods_;                                      ///< per column
  std::vector<uint64_t> lane_divisor_, lane_magic_, lane_adjust_;  ///< [(N - 1) * lane_heads]
};

static_assert(NgramHashPolicy<NumpyMultiplyXor>);

/// Multi-head N-gram hasher of one Engram layer.
/// @tparam Policy how an n-gram becomes a row id (NumpyMultiplyXor: the reference; Xxh3Hash).
template <NgramHashPolicy Policy = NumpyMultiplyXor>
class NgramHasherT {
 public:
  using policy_type = Policy;

  /// Longest history a state can hold: max_ngram_size is at most 64.
  static constexpr int64_t kMaxLookback = 63;
  /// A dead token in a state's history under DeadTokenRule::kCumulative.
  static constexpr int64_t kDeadMarker = -1;

  /// @param config   the model's Engram config (hashing fields: engram_vocab_size, max_ngram_size,
  ///                 n_head_per_ngram, layer_ids, pad_id, seed)
  /// @param lookup   compression table, tokenizer id -> compressed id (>= 0); copied
  /// @param layer_id the transformer layer, one of config.layer_ids
  NgramHasherT(const EngramConfig& config, std::span<const int64_t> lookup, int64_t layer_id);

  /// As above, sharing ownership of `lookup` (not null) instead of copying it.
  NgramHasherT(const EngramConfig& config, std::shared_ptr<const std::vector<int64_t>> lookup,
               int64_t layer_id);

  int64_t layer_id() const noexcept { return layer_id_; }
  int64_t max_ngram_size() const noexcept { return max_ngram_size_; }
  int64_t heads_per_ngram() const noexcept { return heads_; }
  /// Row ids per token: (N - 1) * H.
  int64_t num_columns() const noexcept { return columns_; }
  /// Ids accepted: below lookup_size(), and >= 0 unless accepts_negative_ids().
  int64_t lookup_size() const noexcept { return static_cast<int64_t>(lookup_.size()); }
  /// Whether negative ids are taken (hashed uncompressed, as the reference does): under
  /// DeadTokenRule::kPadPosition; V4.1's kCumulative rule refuses them.
  bool accepts_negative_ids() const noexcept { return !cumulative_; }
  /// Whether a live token id is taken (the rule every id check applies).
  bool accepts_token_id(int64_t id) const noexcept {
    return id < lookup_size() && (id >= 0 || accepts_negative_ids());
  }
  /// Whether a state's history may hold v: a compressed id, a negative token id (when
  /// accepts_negative_ids()) or, under the cumulative rule, kDeadMarker.
  bool accepts_history_id(int64_t v) const noexcept {
    return (v < compressed_vocab_size_ && (v >= 0 || accepts_negative_ids())) ||
           (cumulative_ && v == kDeadMarker);
  }
  /// C = max(lookup) + 1.
  int64_t compressed_vocab_size() const noexcept { return compressed_vocab_size_; }
  /// lookup[pad_id]: the id before the sequence start and of dead tokens.
  int64_t pad_compressed_id() const noexcept { return pad_compressed_id_; }
  /// Table size of each column, (N - 1) * H; row ids of column c are in [0, primes()[c]).
  std::span<const int64_t> primes() const noexcept { return primes_; }
  const Policy& policy() const noexcept { return policy_; }
  /// True under DeadTokenRule::kCumulative.
  bool cumulative_dead_rule() const noexcept { return cumulative_; }

  /// The layer's multipliers (policies that have them, e.g. NumpyMultiplyXor).
  std::span<const int64_t> multipliers() const noexcept requires requires(const Policy& p) {
    { p.multipliers() } -> std::convertible_to<std::span<const int64_t>>;
  }
  { return policy_.multipliers(); }

  /// The state of a sequence that has seen nothing yet: N - 1 compressed pad ids.
  NgramHashState initial_state() const {
    return NgramHashState(
        std::vector<int64_t>(static_cast<size_t>(max_ngram_size_ - 1), pad_compressed_id_));
  }

  /// The state after the tokens `preceding` (only the last N - 1 matter; fewer are padded), e.g.
  /// the end of a cached prefix. `live` (empty = all live) marks dead tokens as in hash().
  template <NgramTokenIdRange Ids>
  NgramHashState state_after(const Ids& preceding, std::span<const uint8_t> live = {}) const {
    const auto ids = as_span(preceding);
    const int64_t count = static_cast<int64_t>(ids.size());
    ENGRAM_CHECK(live.empty() || static_cast<int64_t>(live.size()) == count,
                 "NgramHasher::state_after: live mask has ", live.size(), " entries, expected ",
                 count);
    check_ids(ids, live, 1, count, "NgramHasher::state_after");
    NgramHashState state = initial_state();
    std::span<int64_t> history = state.mutable_history();
    const int64_t lookback = max_ngram_size_ - 1;
    for (int64_t t = std::max<int64_t>(0, count - lookback); t < count; ++t)
      history[static_cast<size_t>(lookback - (count - t))] = compress(ids, live, t);
    return state;
  }

  /// Hashes whole sequences: ids [B, T] -> out [B, T, num_columns()]; `live` [B, T] or empty.
  template <NgramTokenIdRange Ids>
  void hash(const Ids& ids, int64_t batch, int64_t seqlen, std::span<int64_t> out,
            std::span<const uint8_t> live = {}) const {
    run(as_span(ids), batch, seqlen, out, {}, live, false, "NgramHasher::hash");
  }

  /// Hashes the next chunk of B sequences: ids [B, T] continue states[b]; out [B, T,
  /// num_columns()]; states advance by T tokens. Chunked == whole for any chunk sizes (T may be 0).
  template <NgramTokenIdRange Ids>
  void hash_chunk(const Ids& ids, int64_t batch, int64_t seqlen, std::span<int64_t> out,
                  std::span<NgramHashState> states, std::span<const uint8_t> live = {}) const {
    ENGRAM_CHECK(static_cast<int64_t>(states.size()) == batch,
                 "NgramHasher::hash_chunk: ", states.size(), " states for a batch of ", batch,
                 " sequences");
    run(as_span(ids), batch, seqlen, out, states, live, false, "NgramHasher::hash_chunk");
  }

  /// The plain scalar spec of hash_chunk: gathers each position's n-gram window one by one and
  /// calls the policy's reference kernel. Same contract and results; slow.
  template <NgramTokenIdRange Ids>
  void hash_chunk_reference(const Ids& ids, int64_t batch, int64_t seqlen, std::span<int64_t> out,
                            std::span<NgramHashState> states,
                            std::span<const uint8_t> live = {}) const {
    ENGRAM_CHECK(static_cast<int64_t>(states.size()) == batch,
                 "NgramHasher::hash_chunk_reference: ", states.size(), " states for a batch of ",
                 batch, " sequences");
    run(as_span(ids), batch, seqlen, out, states, live, true, "NgramHasher::hash_chunk_reference");
  }

 private:
  static constexpr int64_t kBlock = 256;  ///< positions per kernel call (window on the stack)

  template <NgramTokenIdRange Ids>
  static auto as_span(const Ids& ids) noexcept {
    using Id = std::remove_cv_t<std::ranges::range_value_t<const Ids&>>;
    return std::span<const Id>(std::ranges::data(ids), std::ranges::size(ids));
  }

  static int64_t checked_compressed_vocab_size(std::span<const int64_t> lookup) {
    ENGRAM_CHECK(!lookup.empty(), "NgramHasher: the compression table (lookup) is empty");
    int64_t max_value = 0;
    for (size_t i = 0; i < lookup.size(); ++i) {
      ENGRAM_CHECK(lookup[i] >= 0, "NgramHasher: compression table entry lookup[", i,
                   "] = ", lookup[i], " is negative");
      max_value = std::max(max_value, lookup[i]);
    }
    ENGRAM_CHECK(max_value < std::numeric_limits<int64_t>::max(),
                 "NgramHasher: compression table holds INT64_MAX; C = max(lookup) + 1 overflows");
    return max_value + 1;
  }

  /// Checks everything the hasher depends on before any member is computed from it.
  static std::span<const int64_t> validated(const EngramConfig& config,
                                            const std::vector<int64_t>* table, int64_t layer_id) {
    ENGRAM_CHECK(table != nullptr, "NgramHasher: the compression table (lookup) is null");
    const std::span<const int64_t> lookup(*table);
    detail::check_hashing_config(config, "NgramHasher");
    config.require_layer(layer_id, "NgramHasher");
    ENGRAM_CHECK(config.pad_id >= 0 && config.pad_id < static_cast<int64_t>(lookup.size()),
                 "NgramHasher: field 'pad_id' (", config.pad_id,
                 ") is outside the compression table [0, ", lookup.size(), ")");
    return lookup;
  }

  template <class Id>
  int64_t compress(std::span<const Id> ids, std::span<const uint8_t> live,
                   int64_t i) const noexcept {
    if (!live.empty() && live[static_cast<size_t>(i)] == 0) return dead_value();
    return compress_id(static_cast<int64_t>(ids[static_cast<size_t>(i)]));
  }

  /// c(id) of the banner: lookup[id], a negative id (checked allowed) unchanged.
  int64_t compress_id(int64_t id) const noexcept {
    return id < 0 ? id : lookup_[static_cast<size_t>(id)];
  }

  template <class Id>
  void check_ids(std::span<const Id> ids, std::span<const uint8_t> live, int64_t batch,
                 int64_t seqlen, const char* where) const {
    const uint64_t size = lookup_.size();
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t t = 0; t < seqlen; ++t) {
        const size_t i = static_cast<size_t>(b * seqlen + t);
        if (!live.empty() && live[i] == 0) continue;
        const Id id = ids[i];
        bool ok;
        if constexpr (std::is_signed_v<Id>)
          ok = accepts_token_id(static_cast<int64_t>(id));
        else
          ok = static_cast<uint64_t>(id) < size;
        ENGRAM_CHECK(ok, where, ": token id ", static_cast<int64_t>(id), " at (batch ", b,
                     ", position ", t, ") is outside the compression table [0, ", size, ")",
                     accepts_negative_ids() ? " (negative ids are hashed as they are)" : "");
      }
  }

  void check_state(const NgramHashState& state, int64_t b, const char* where) const {
    const auto history = state.history();
    ENGRAM_CHECK(static_cast<int64_t>(history.size()) == max_ngram_size_ - 1, where,
                 ": state of sequence ", b, " holds ", history.size(),
                 " ids, expected max_ngram_size - 1 = ", max_ngram_size_ - 1,
                 " (make states with initial_state() or state_after())");
    for (int64_t v : history)
      ENGRAM_CHECK(accepts_history_id(v), where, ": state of sequence ", b, " holds compressed id ",
                   v, ", outside [0, ", compressed_vocab_size_, ")",
                   accepts_negative_ids() ? " (or a negative token id)" : "");
  }

  /// What a dead token's slot holds before blocking: pad, or the marker of the cumulative rule.
  int64_t dead_value() const noexcept { return cumulative_ ? kDeadMarker : pad_compressed_id_; }

  /// Cumulative rule: copies the window of x[0] (x[-lookback..0]) into window[0..lookback] with
  /// every slot at or before the newest dead token replaced by pad; returns whether any was.
  bool blocked_window(const int64_t* x, int64_t* window) const noexcept {
    const int64_t lookback = max_ngram_size_ - 1;
    bool blocked = false;
    for (int64_t s = 0; s <= lookback; ++s) {
      blocked = blocked || x[-s] == kDeadMarker;
      window[lookback - s] = blocked ? pad_compressed_id_ : x[-s];
    }
    return blocked;
  }

  /// Cumulative rule over `count` positions of x (dead tokens as kDeadMarker): runs of windows
  /// without a dead token go to the policy's fast kernel, the others one by one, blocked.
  void hash_rows_cumulative(const int64_t* x, int64_t count, int64_t* out,
                            bool reference) const noexcept {
    const int64_t lookback = max_ngram_size_ - 1;
    std::array<int64_t, kMaxLookback + 1> window;
    int64_t i = 0;
    while (i < count) {
      if (blocked_window(x + i, window.data())) {
        const int64_t* w = window.data() + lookback;
        if (reference)
          policy_.hash_rows_reference(w, 1, out + i * columns_);
        else
          policy_.hash_rows(w, 1, out + i * columns_);
        ++i;
        continue;
      }
      int64_t j = i + 1;
      while (j < count && x[j] != kDeadMarker) ++j;
      if (reference)
        policy_.hash_rows_reference(x + i, j - i, out + i * columns_);
      else
        policy_.hash_rows(x + i, j - i, out + i * columns_);
      i = j;
    }
  }

  template <class Id>
  void run(std::span<const Id> ids, int64_t batch, int64_t seqlen, std::span<int64_t> out,
           std::span<NgramHashState> states, std::span<const uint8_t> live, bool reference,
           const char* where) const {
    ENGRAM_CHECK(batch >= 0 && seqlen >= 0, where, ": batch (", batch, ") and seqlen (", seqlen,
                 ") must be non-negative");
    int64_t tokens = 0, outputs = 0;
    ENGRAM_CHECK(!__builtin_mul_overflow(batch, seqlen, &tokens) &&
                     !__builtin_mul_overflow(tokens, columns_, &outputs),
                 where, ": batch x seqlen x columns overflows");
    ENGRAM_CHECK(static_cast<int64_t>(ids.size()) == tokens, where, ": ids has ", ids.size(),
                 " elements, expected batch x seqlen = ", batch, " x ", seqlen, " = ", tokens);
    ENGRAM_CHECK(static_cast<int64_t>(out.size()) == outputs, where, ": out has ", out.size(),
                 " elements, expected batch x seqlen x num_columns = ", batch, " x ", seqlen, " x ",
                 columns_, " = ", outputs);
    ENGRAM_CHECK(live.empty() || static_cast<int64_t>(live.size()) == tokens, where,
                 ": live mask has ", live.size(), " entries, expected batch x seqlen = ", tokens);
    for (size_t b = 0; b < states.size(); ++b)
      check_state(states[b], static_cast<int64_t>(b), where);
    check_ids(ids, live, batch, seqlen, where);

    const int64_t lookback = max_ngram_size_ - 1;
    std::array<int64_t, kMaxLookback> fresh;
    for (int64_t b = 0; b < batch; ++b) {
      int64_t* history =
          states.empty() ? fresh.data() : states[static_cast<size_t>(b)].mutable_history().data();
      if (states.empty()) std::fill_n(fresh.begin(), lookback, pad_compressed_id_);
      const auto row_ids =
          ids.subspan(static_cast<size_t>(b * seqlen), static_cast<size_t>(seqlen));
      const auto row_live =
          live.empty() ? live
                       : live.subspan(static_cast<size_t>(b * seqlen), static_cast<size_t>(seqlen));
      int64_t* row_out = out.data() + b * seqlen * columns_;
      if (reference)
        sequence_reference(row_ids, row_live, seqlen, row_out, history);
      else
        sequence_fast(row_ids, row_live, seqlen, row_out, history);
    }
  }

  /// Compresses blocks of kBlock ids into a window that keeps the last N - 1 ids in front.
  template <class Id>
  void sequence_fast(std::span<const Id> ids, std::span<const uint8_t> live, int64_t seqlen,
                     int64_t* out, int64_t* history) const noexcept {
    const int64_t lookback = max_ngram_size_ - 1;
    std::array<int64_t, kBlock + kMaxLookback> window;
    std::copy_n(history, lookback, window.begin());
    int64_t* x = window.data() + lookback;
    for (int64_t t0 = 0; t0 < seqlen; t0 += kBlock) {
      const int64_t n = std::min(kBlock, seqlen - t0);
      if (live.empty()) {
        for (int64_t i = 0; i < n; ++i) x[i] = compress_id(static_cast<int64_t>(ids[t0 + i]));
      } else {
        const int64_t dead = dead_value();
        for (int64_t i = 0; i < n; ++i)
          x[i] = live[t0 + i] != 0 ? compress_id(static_cast<int64_t>(ids[t0 + i])) : dead;
      }
      if (cumulative_)  // the history may hold dead tokens even when this chunk has none
        hash_rows_cumulative(x, n, out + t0 * columns_, false);
      else
        policy_.hash_rows(x, n, out + t0 * columns_);
      std::copy_n(window.begin() + n, lookback, window.begin());  // keep the last N - 1 ids
    }
    std::copy_n(window.begin(), lookback, history);
  }

  /// The spec: for every position, the n-gram window x[t - N + 1 .. t] gathered one id at a time
  /// from the chunk or, before it, from the state.
  template <class Id>
  void sequence_reference(std::span<const Id> ids, std::span<const uint8_t> live, int64_t seqlen,
                          int64_t* out, int64_t* history) const noexcept {
    const int64_t lookback = max_ngram_size_ - 1;
    std::array<int64_t, kMaxLookback + 1> window;  // window[lookback] is position t
    for (int64_t t = 0; t < seqlen; ++t) {
      for (int64_t k = 0; k <= lookback; ++k) {
        const int64_t pos = t - k;
        window[static_cast<size_t>(lookback - k)] =
            pos >= 0 ? compress(ids, live, pos) : history[lookback + pos];
      }
      if (cumulative_)
        hash_rows_cumulative(window.data() + lookback, 1, out + t * columns_, true);
      else
        policy_.hash_rows_reference(window.data() + lookback, 1, out + t * columns_);
    }
    std::vector<int64_t> next(static_cast<size_t>(lookback));  // not a hot path
    for (int64_t k = 0; k < lookback; ++k) {
      const int64_t pos = seqlen - lookback + k;
      next[static_cast<size_t>(k)] = pos >= 0 ? compress(ids, live, pos) : history[lookback + pos];
    }
    std::copy(next.begin(), next.end(), history);
  }

  std::shared_ptr<const std::vector<int64_t>> lookup_owner_;  ///< the table lookup_ views
  std::span<const int64_t> lookup_;
  int64_t layer_id_;
  int64_t max_ngram_size_;
  int64_t heads_;
  int64_t columns_;
  int64_t compressed_vocab_size_;
  int64_t pad_compressed_id_;
  bool cumulative_ = false;
  std::vector<int64_t> primes_;
  Policy policy_;
};

// The constructors out of the class body (not implicitly inline), so that a consumer of the
// extern instantiation below does not compile them (nor the prime search they run).
template <NgramHashPolicy Policy>
NgramHasherT<Policy>::NgramHasherT(const EngramConfig& config, std::span<const int64_t> lookup,
                                   int64_t layer_id)
    : NgramHasherT(config,
                   std::make_shared<const std::vector<int64_t>>(lookup.begin(), lookup.end()),
                   layer_id) {}

template <NgramHashPolicy Policy>
NgramHasherT<Policy>::NgramHasherT(const EngramConfig& config,
                                   std::shared_ptr<const std::vector<int64_t>> lookup,
                                   int64_t layer_id)
    : lookup_owner_(std::move(lookup)),
      lookup_(validated(config, lookup_owner_.get(), layer_id)),
      layer_id_(layer_id),
      max_ngram_size_(config.max_ngram_size),
      heads_(config.n_head_per_ngram),
      columns_(config.num_columns()),
      compressed_vocab_size_(checked_compressed_vocab_size(lookup_)),
      pad_compressed_id_(lookup_[static_cast<size_t>(config.pad_id)]),
      cumulative_(config.dead_token_rule == DeadTokenRule::kCumulative),
      primes_(engram_layer_primes(config, layer_id)),
      policy_(NgramHashContext{config, layer_id, compressed_vocab_size_, primes_}) {}

/// The reference-compatible hasher.
using NgramHasher = NgramHasherT<>;

#ifdef ENGRAM_EXTERN_TEMPLATES
// Compiled once in src/engram_instantiations.cpp (engram::instantiations).
extern template class NgramHasherT<NumpyMultiplyXor>;
#endif

}  // namespace engram
