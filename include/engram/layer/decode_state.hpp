// engram/layer/decode_state.hpp: per-sequence streaming state and the reusable per-caller workspace
// of the Engram layers.
//
// EngramDecodeStateT holds what one sequence carries from one forward call to the next:
//   - position(): tokens consumed so far;
//   - hash state (token-id front end): compressed ids of the last N - 1 tokens (hash_state.hpp);
//   - conv history (demo variant): the short conv's last H = (kernel_size - 1) * max_ngram_size
//     normed inputs, [H, hc * d] (conv_history_row(j), j = 0 the oldest), zeros at the start.
// Feed a sequence through one front end: the hash-id forwards do not see token ids and leave the
// hash state as it is. A server keeps one per live sequence and passes them with each chunk; any
// chunking of a sequence then gives the whole-sequence output. Make states with the layer's
// make_state(max_rollback); reset() starts the sequence over. The layer checks a state's shapes.
//
// Speculative decoding: rollback(j) undoes the last j tokens consumed (position, hash state and
// conv history as they were j tokens ago), for j <= rollback_available() <= max_rollback:
//   state = layer.make_state(k);  layer.forward_tokens(drafts[k], ..., states, ws);
//   state.rollback(k - accepted);  // == having fed drafts[0 .. accepted) alone, bit for bit
// Cost: the conv ring holds H + max_rollback rows (each written once, rows addressed by
// position mod ring size), and max_rollback copies of the whole hash state (one before each of
// the last max_rollback tokens hashed, so any hashing rule is restored as it was): memory
// (H + max_rollback) * hc * d Scalars + max_rollback * (N - 1) int64; no allocation after
// make_state. Rolling back past what is kept is an engram::Error naming both counts.
//
// EngramWorkspaceT is the scratch of one calling thread: buffers grow to the largest call seen and
// are reused, so steady-state calls allocate nothing (the layer's reserve() pre-sizes them).
// Neither type is thread-safe: one state per sequence, one workspace per concurrent caller.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "engram/detail/aligned_buffer.hpp"
#include "engram/error.hpp"
#include "engram/hashing/hash_state.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/memory/embedding_table.hpp"

namespace engram {

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
class EngramLayerT;
namespace detail {
struct DecodeStateAccess;
}

/// Streaming state of one sequence through one Engram layer.
/// @tparam Scalar the layer's scalar type.
template <class Scalar = float>
class EngramDecodeStateT {
 public:
  EngramDecodeStateT() = default;
  /// A state at the sequence start: zero conv history of [history_rows, channels], the hasher's
  /// initial state (empty without a token-id front end), and room to roll back up to
  /// max_rollback tokens.
  EngramDecodeStateT(int64_t history_rows, int64_t channels, NgramHashState initial_hash = {},
                     int64_t max_rollback = 0)
      : history_rows_(history_rows),
        channels_(channels),
        max_rollback_(max_rollback),
        ring_rows_(history_rows > 0 ? history_rows + max_rollback : 0),
        conv_history_(static_cast<size_t>(ring_rows_ * channels), Scalar(0)),
        initial_hash_(std::move(initial_hash)),
        hash_state_(initial_hash_),
        hash_before_(static_cast<size_t>(max_rollback), initial_hash_) {
    ENGRAM_CHECK(history_rows >= 0 && channels >= 0 && max_rollback >= 0,
                 "EngramDecodeState: history_rows (", history_rows, "), channels (", channels,
                 ") and max_rollback (", max_rollback, ") must be non-negative");
  }

  /// Back to the sequence start (zero history, initial hash state, position 0, nothing to undo).
  void reset() {
    std::fill(conv_history_.begin(), conv_history_.end(), Scalar(0));
    hash_state_ = initial_hash_;
    position_ = position_high_ = hashed_ = hashed_high_ = 0;
  }

  /// Tokens consumed so far.
  int64_t position() const noexcept { return position_; }
  int64_t history_rows() const noexcept { return history_rows_; }
  int64_t channels() const noexcept { return channels_; }
  /// Row j of the conv history, [channels], j = 0 the oldest (j < history_rows()).
  std::span<const Scalar> conv_history_row(int64_t j) const noexcept {
    return {conv_row(position_ - history_rows_ + j), static_cast<size_t>(channels_)};
  }
  /// The n-gram hasher's state (compressed ids of the last N - 1 tokens).
  const NgramHashState& hash_state() const noexcept { return hash_state_; }

  /// The most tokens this state can ever undo at once (make_state's max_rollback).
  int64_t max_rollback() const noexcept { return max_rollback_; }
  /// How many of the last tokens rollback() can undo now: at most max_rollback(), the position,
  /// and what earlier rollbacks left (a rolled-back token's slot is reused).
  int64_t rollback_available() const noexcept {
    const int64_t available = undoable(position_, position_high_);
    return hashes_used() ? std::min(available, undoable(hashed_, hashed_high_)) : available;
  }

  /// Undoes the last j tokens consumed: position, hash state (when fed token ids) and conv history
  /// are as they were j tokens ago. 0 <= j <= rollback_available(), else engram::Error.
  void rollback(int64_t j) {
    ENGRAM_CHECK(!hashes_used() || hashed_ == position_, "EngramDecodeState::rollback: the hash ",
                 "history is at token ", hashed_, " but the position at token ", position_,
                 " (hash_tokens without its forward_memory, or two front ends mixed?)");
    const int64_t available = rollback_available();
    ENGRAM_CHECK(j >= 0 && j <= available, "EngramDecodeState::rollback: cannot undo ", j,
                 " tokens, ", available, " can be undone (max_rollback ", max_rollback_,
                 ", position ", position_, ")");
    if (j == 0) return;
    position_high_ = std::max(position_high_, position_);
    position_ -= j;
    if (hashes_used()) {
      hashed_high_ = std::max(hashed_high_, hashed_);
      hashed_ -= j;
      hash_state_ = hash_before_[static_cast<size_t>(hashed_ % max_rollback_)];
    }
  }

 private:
  template <class, class, NgramHashPolicy>
  friend class EngramLayerT;
  friend struct detail::DecodeStateAccess;

  // Tokens that can be undone at `at`, given the highest count `high` reached since the last
  // rollback or before: every rolled-back token beyond `at` still holds one of the
  // max_rollback_ slots (high - at <= max_rollback_ - undoable holds throughout).
  int64_t undoable(int64_t at, int64_t high) const noexcept {
    return std::min(max_rollback_ - (std::max(high, at) - at), at);
  }
  bool hashes_used() const noexcept { return hashed_ != 0 || hashed_high_ != 0; }

  // The conv ring row of token `index` (negative: before the sequence start, zeros). Token i
  // lives in slot i mod ring_rows_; the last history_rows_ + rollback_available() tokens' rows
  // are intact.
  const Scalar* conv_row(int64_t index) const noexcept {
    return conv_history_.data() + ((index % ring_rows_) + ring_rows_) % ring_rows_ * channels_;
  }
  Scalar* conv_row(int64_t index) noexcept {
    return conv_history_.data() + ((index % ring_rows_) + ring_rows_) % ring_rows_ * channels_;
  }

  /// Stores the last rows of a chunk of `len` normed rows [len, channels] (the chunk's first token
  /// at position()) and advances the position.
  void push_conv_rows(const Scalar* rows, int64_t len) noexcept {
    push_conv_rows_with(
        len, [&](int64_t p, Scalar* dst) { std::copy_n(rows + p * channels_, channels_, dst); });
  }

  /// push_conv_rows with the rows made on demand: row(p, dst) writes the chunk's row p
  /// [channels] into dst, called for the rows the ring keeps (the last ring_rows_).
  template <class RowFn>
  void push_conv_rows_with(int64_t len, const RowFn& row) noexcept {
    for (int64_t p = std::max<int64_t>(0, len - ring_rows_); p < len; ++p)
      row(p, conv_row(position_ + p));
    position_ += len;
  }

  /// Hashes a chunk of token ids into out [len, cols], continuing the hash state and keeping a
  /// copy of it before each of the chunk's last max_rollback_ tokens. The ids and state must have
  /// been checked (the hasher checks again).
  template <class Hasher>
  void hash_chunk(const Hasher& hasher, std::span<const int64_t> ids, std::span<const uint8_t> live,
                  int64_t* out) {
    const auto len = static_cast<int64_t>(ids.size());
    const int64_t cols = hasher.num_columns();
    const int64_t bulk = len - std::min(len, max_rollback_);
    auto live_of = [&](int64_t first, int64_t count) {
      return live.empty() ? live
                          : live.subspan(static_cast<size_t>(first), static_cast<size_t>(count));
    };
    if (bulk > 0)
      hasher.hash_chunk(ids.first(static_cast<size_t>(bulk)), 1, bulk,
                        std::span<int64_t>(out, static_cast<size_t>(bulk * cols)),
                        std::span<NgramHashState>(&hash_state_, 1), live_of(0, bulk));
    for (int64_t t = bulk; t < len; ++t) {
      hash_before_[static_cast<size_t>((hashed_ + t) % max_rollback_)] = hash_state_;
      hasher.hash_chunk(ids.subspan(static_cast<size_t>(t), 1), 1, 1,
                        std::span<int64_t>(out + t * cols, static_cast<size_t>(cols)),
                        std::span<NgramHashState>(&hash_state_, 1), live_of(t, 1));
    }
    hashed_ += len;
  }

  int64_t history_rows_ = 0;
  int64_t channels_ = 0;
  int64_t max_rollback_ = 0;
  int64_t ring_rows_ = 0;  // conv ring: history_rows_ + max_rollback_ rows (0 without history)
  int64_t position_ = 0;
  int64_t position_high_ = 0;         // highest position before the last rollback
  int64_t hashed_ = 0;                // tokens through the hash state
  int64_t hashed_high_ = 0;           // highest hashed_ before the last rollback
  std::vector<Scalar> conv_history_;  // [ring_rows_, channels_]
  NgramHashState initial_hash_;
  NgramHashState hash_state_;
  std::vector<NgramHashState> hash_before_;  // slot i mod max_rollback_: state before token i
};

namespace detail {
/// The layers' (and layer/detail's) access to a state's internals.
struct DecodeStateAccess {
  template <class Scalar, class Hasher>
  static void hash_chunk(EngramDecodeStateT<Scalar>& state, const Hasher& hasher,
                         std::span<const int64_t> ids, std::span<const uint8_t> live,
                         int64_t* out) {
    state.hash_chunk(hasher, ids, live, out);
  }
  /// Advances a state of a layer without conv history by `len` tokens.
  template <class Scalar>
  static void advance(EngramDecodeStateT<Scalar>& state, int64_t len) noexcept {
    state.position_ += len;
  }
  /// The conv history row of token `index` of the sequence (negative: before its start, zeros).
  template <class Scalar>
  static const Scalar* conv_row(const EngramDecodeStateT<Scalar>& state, int64_t index) noexcept {
    return state.conv_row(index);
  }
  /// Stores a chunk's newest normed rows [len, channels] and advances the position by len.
  template <class Scalar>
  static void push_conv_rows(EngramDecodeStateT<Scalar>& state, const Scalar* rows,
                             int64_t len) noexcept {
    state.push_conv_rows(rows, len);
  }
  /// As push_conv_rows, row(p, dst) writing the chunk's row p where the ring keeps it.
  template <class Scalar, class RowFn>
  static void push_conv_rows_with(EngramDecodeStateT<Scalar>& state, int64_t len,
                                  const RowFn& row) noexcept {
    state.push_conv_rows_with(len, row);
  }
  /// True when the state's conv history is [history_rows, channels] (made by such a layer).
  template <class Scalar>
  static bool has_shape(const EngramDecodeStateT<Scalar>& state, int64_t history_rows,
                        int64_t channels) noexcept {
    return state.history_rows_ == history_rows && state.channels_ == channels &&
           static_cast<int64_t>(state.conv_history_.size()) == state.ring_rows_ * channels;
  }
};
}  // namespace detail

/// Scratch of the Engram layers' forward calls (one per calling thread).
/// @tparam Scalar the layer's scalar type.
template <class Scalar = float>
class EngramWorkspaceT {
 public:
  EngramWorkspaceT() = default;
  EngramWorkspaceT(EngramWorkspaceT&&) noexcept = default;
  EngramWorkspaceT& operator=(EngramWorkspaceT&&) noexcept = default;

 private:
  template <class, class, NgramHashPolicy>
  friend class EngramLayerT;

  /// One gather workspace per kernel thread.
  std::span<GatherWorkspace> gather_workspaces(int threads) {
    if (static_cast<int>(gather_.size()) < threads) gather_.resize(static_cast<size_t>(threads));
    return {gather_.data(), static_cast<size_t>(threads)};
  }

  detail::AlignedBuffer<Scalar> memory_;          // e, [tokens, memory_dim]
  detail::AlignedBuffer<float> memory_f32_;       // e as gathered when Scalar is not float
  detail::AlignedBuffer<Scalar> kv_;              // projections, [tokens, (hc + 1) * d]
  detail::AlignedBuffer<Scalar> step_scratch_;    // the block step's (Step::scratch_size)
  detail::AlignedBuffer<int64_t> token_segment_;  // token -> its sequence in the call
  detail::AlignedBuffer<int64_t> segment_start_;  // sequence -> its first token
  detail::AlignedBuffer<int64_t> hashed_ids_;     // hash ids of the token-id front end
  detail::AlignedBuffer<int64_t> ids_;            // hash ids with dead tokens' replaced
  std::vector<GatherWorkspace> gather_;
};

}  // namespace engram
