// engram/layer/blocks/block.hpp: what a Block of EngramLayerT<Scalar, Block, HashPolicy> provides
// (the per-token step after the shared gather and stacked projection), checked by EngramBlock.
//
// A Block is a tag type with:
//   kName                          the layer's name in error messages;
//   Weights<Scalar>                its checkpoint weights (config, table, kv_weight, ...);
//   load_weights<Scalar>(config, file, options)  reads them (checkpoint.hpp);
//   kHasHistory                    whether states keep conv rows;
//   kChecksHidden                  whether Step::forward checks the hidden states itself (else
//                                  the layer does before the step);
//   Step<Scalar>                   built from the weights; history_rows() (conv rows a state
//                                  keeps), scratch_size(tokens) (BlockBatch::scratch values),
//                                  forward(BlockBatch) (noexcept, threads over tokens; writes out
//                                  and updates the states; returns -1, or with kChecksHidden a
//                                  live token whose hidden state is not finite, having written
//                                  nothing) and forward_reference(...) (the readable spec, plain
//                                  loops; allocates).
// The blocks: DemoBlock (demo_block.hpp) and V41Block (v41_block.hpp).
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string_view>

#include "engram/layer/decode_state.hpp"

namespace engram {

/// One forward call as a block sees it: the projection done, tokens packed sequence after
/// sequence.
template <class Scalar>
struct BlockBatch {
  Scalar* kv;                    ///< [tokens, (hc + 1) * d], the stacked projection (no bias)
  const Scalar* hidden;          ///< [tokens, hc, d]
  Scalar* out;                   ///< [tokens, hc, d]; may equal hidden
  int64_t tokens;                ///< > 0
  const uint8_t* live;           ///< [tokens] (0 = dead) or null (all live)
  const int64_t* token_segment;  ///< token -> its sequence
  const int64_t* segment_start;  ///< sequence -> its first token
  int64_t segments;              ///< sequences in the call
  std::span<EngramDecodeStateT<Scalar>* const> states;  ///< empty or one per sequence
  Scalar* scratch;  ///< Step::scratch_size(tokens) values (null when that is 0)

  bool dead(int64_t t) const noexcept { return live != nullptr && live[t] == 0; }
  int64_t length(int64_t s) const noexcept {
    return (s + 1 < segments ? segment_start[s + 1] : tokens) - segment_start[s];
  }
};

/// A per-token step policy of EngramLayerT.
template <class B>
concept EngramBlock = requires {
  { B::kName } -> std::convertible_to<std::string_view>;
  typename B::template Weights<float>;
  typename B::template Step<float>;
  { B::kHasHistory } -> std::convertible_to<bool>;
  { B::kChecksHidden } -> std::convertible_to<bool>;
};

}  // namespace engram
