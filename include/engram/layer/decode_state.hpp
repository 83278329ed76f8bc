// engram/layer/decode_state.hpp: per-sequence streaming state and the reusable per-caller workspace
// of the Engram layers.
//
// EngramDecodeStateT holds what one sequence carries from one forward call to the next:
//   - position(): tokens consumed so far;
//   - hash state (token-id front end): compressed ids of the last N - 1 tokens (hash_state.hpp);
//   - conv history (demo variant): the short conv's last (kernel_size - 1) * max_ngram_size normed
//     inputs, [history_rows, hc * d], a ring buffer (conv_history_row(j), j = 0 the oldest), zeros
//     at the sequence start; a step writes only its new rows.
// Feed a sequence through one front end: the hash-id forwards do not see token ids and leave the
// hash state as it is.
// A server keeps one per live sequence and passes them with each chunk; any chunking of a sequence
// then gives the whole-sequence output. Make states with the layer's make_state(); reset() starts
// the sequence over. The layer checks that a state matches its shapes.
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

#include "engram/hashing/hash_state.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/memory/embedding_table.hpp"
#include "engram/nn/detail/eigen_support.hpp"

namespace engram {

template <class Scalar, NgramHashPolicy HashPolicy>
class EngramLayerT;
template <class Scalar, NgramHashPolicy HashPolicy>
class FusedEngramLayerT;

/// Streaming state of one sequence through one Engram layer.
/// @tparam Scalar the layer's scalar type.
template <class Scalar = float>
class EngramDecodeStateT {
 public:
  EngramDecodeStateT() = default;
  /// A state at the sequence start: zero conv history of [history_rows, channels] and the
  /// hasher's initial state (empty without a token-id front end).
  EngramDecodeStateT(int64_t history_rows, int64_t channels, NgramHashState initial_hash = {})
      : history_rows_(history_rows),
        channels_(channels),
        conv_history_(static_cast<size_t>(history_rows * channels), Scalar(0)),
        initial_hash_(std::move(initial_hash)),
        hash_state_(initial_hash_) {}

  /// Back to the sequence start (zero history, initial hash state, position 0).
  void reset() {
    std::fill(conv_history_.begin(), conv_history_.end(), Scalar(0));
    history_head_ = 0;
    hash_state_ = initial_hash_;
    position_ = 0;
  }

  /// Tokens consumed so far.
  int64_t position() const noexcept { return position_; }
  int64_t history_rows() const noexcept { return history_rows_; }
  int64_t channels() const noexcept { return channels_; }
  /// Row j of the conv history, [channels], j = 0 the oldest (j < history_rows()).
  std::span<const Scalar> conv_history_row(int64_t j) const noexcept {
    return {conv_history_.data() + ((history_head_ + j) % history_rows_) * channels_,
            static_cast<size_t>(channels_)};
  }
  /// The n-gram hasher's state (compressed ids of the last N - 1 tokens).
  const NgramHashState& hash_state() const noexcept { return hash_state_; }

 private:
  template <class, NgramHashPolicy>
  friend class EngramLayerT;
  template <class, NgramHashPolicy>
  friend class FusedEngramLayerT;

  int64_t history_rows_ = 0;
  int64_t channels_ = 0;
  int64_t position_ = 0;
  int64_t history_head_ = 0;          // ring row of the oldest history row
  std::vector<Scalar> conv_history_;  // ring of history_rows_ rows
  NgramHashState initial_hash_;
  NgramHashState hash_state_;
};

/// Scratch of the Engram layers' forward calls (one per calling thread).
/// @tparam Scalar the layer's scalar type.
template <class Scalar = float>
class EngramWorkspaceT {
 public:
  EngramWorkspaceT() = default;
  EngramWorkspaceT(EngramWorkspaceT&&) noexcept = default;
  EngramWorkspaceT& operator=(EngramWorkspaceT&&) noexcept = default;

 private:
  template <class, NgramHashPolicy>
  friend class EngramLayerT;
  template <class, NgramHashPolicy>
  friend class FusedEngramLayerT;

  /// One gather workspace per kernel thread.
  std::span<GatherWorkspace> gather_workspaces(int threads) {
    if (static_cast<int>(gather_.size()) < threads) gather_.resize(static_cast<size_t>(threads));
    return {gather_.data(), static_cast<size_t>(threads)};
  }

  detail::AlignedBuffer<Scalar> memory_;          // e, [tokens, memory_dim]
  detail::AlignedBuffer<float> memory_f32_;       // e as gathered when Scalar is not float
  detail::AlignedBuffer<Scalar> kv_;              // projections, [tokens, (hc + 1) * d]
  detail::AlignedBuffer<Scalar> normed_;          // conv inputs, [tokens, hc * d]
  detail::AlignedBuffer<int64_t> token_segment_;  // token -> its sequence in the call
  detail::AlignedBuffer<int64_t> segment_start_;  // sequence -> its first token
  detail::AlignedBuffer<int64_t> hashed_ids_;     // hash ids of the token-id front end
  detail::AlignedBuffer<int64_t> ids_;            // hash ids with dead tokens' replaced
  std::vector<GatherWorkspace> gather_;
};

}  // namespace engram
