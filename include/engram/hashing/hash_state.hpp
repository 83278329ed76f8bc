// engram/hashing/hash_state.hpp: the per-sequence state that makes N-gram hashing streamable.
//
// An N-gram hash at position t reads the compressed ids of tokens t-N+1 .. t. NgramHashState holds
// the compressed ids of the last N - 1 tokens a sequence has seen (oldest first; a token masked
// dead is stored as the compressed pad id), so that a sequence hashed in chunks of any size -
// 1 token per step when decoding, or a prefill split anywhere - gives exactly the ids of hashing it
// whole. A fresh state holds N - 1 compressed pad ids (the reference pads before the start).
//
// Make states with NgramHasherT::initial_state() or state_after(preceding ids) (chunked prefill,
// prefix-cache hits); NgramHasherT::hash_chunk advances them. The hasher checks a state's size and
// values before use, so a state from another configuration is an error, never a wrong index.
// A state is a small value type (N - 1 int64); it is not shared between sequences or threads.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace engram {

/// Compressed ids of the last N - 1 tokens of one sequence, oldest first.
class NgramHashState {
 public:
  NgramHashState() = default;
  explicit NgramHashState(std::vector<int64_t> history) : history_(std::move(history)) {}

  /// The last N - 1 compressed ids, oldest first.
  std::span<const int64_t> history() const noexcept { return history_; }
  std::span<int64_t> mutable_history() noexcept { return history_; }

  friend bool operator==(const NgramHashState&, const NgramHashState&) = default;

 private:
  std::vector<int64_t> history_;
};

}  // namespace engram
