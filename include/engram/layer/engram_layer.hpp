// engram/layer/engram_layer.hpp: EngramLayerT<Scalar, Block, HashPolicy>, an Engram layer: hash
// token ids into per-column ids, gather memory rows e, project them, then the Block's per-token
// step (blocks/demo_block.hpp: DeepSeek's demo module, residual excluded; blocks/v41_block.hpp:
// DeepSeek-V4.1's released layer, residual included).
//   hash_ids [B, T, cols] int64 per-column ids (without table offsets), cols = (N - 1) * H
//   input_ids [B, T] token ids (forward_tokens*, with the layer's NgramHasherT)
//   memory   [B, T, m] e given instead of gathered (forward_memory*: rows from a RowTier)
//   hidden, out [B, T, hc, d]; out may be hidden itself (not a partial overlap)
//   live     empty (all live) or [B, T]: 0 marks a dead token (gate shut; ids neither read nor
//            checked; hashed as pad_id by the token-id front end)
//   e = concat_c table[offsets[c] + hash_ids[b, t, c]];  kv = W_kv e;  out = Block(kv, hidden)
// Every front end has a whole-sequence form and a streaming form taking one EngramDecodeStateT per
// sequence (any chunking gives the whole-sequence output; make_state(k) states roll back k tokens);
// *_ragged take per-sequence chunk lengths packed back to back. hash_tokens is the front end
// alone (to fetch a chunk's rows before the layer runs). forward_reference is the readable spec.
// Guarantees: inputs (sizes, id ranges, state shapes, finite hidden and rows) are checked before
// `out` is written, errors naming sequence/position/column; kernels are noexcept; with a reused
// (or reserve()d) Workspace calls do not allocate (bar Eigen's GEMM blocking). Ownership: weights
// shared (copies of a layer share them). Thread safety: const methods may run concurrently with
// distinct workspaces and states. Not guaranteed: bitwise equality with PyTorch or across thread
// counts (GEMM blocking). Design notes: docs/design/layer.md.
//
//   auto hasher = std::make_shared<const engram::NgramHasher>(config, lookup, /*layer_id=*/15);
//   auto layer = engram::EngramLayer::load(config, file, hasher, {.prefix = "layers.15.engram."});
//   engram::EngramLayer::Workspace ws;
//   layer.forward_tokens(input_ids, hidden, B, T, out, ws);        // or forward(hash_ids, ...)
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engram/config.hpp"
#include "engram/detail/parallel.hpp"
#include "engram/error.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/blocks/block.hpp"
#include "engram/layer/blocks/demo_block.hpp"
#include "engram/layer/blocks/v41_block.hpp"
#include "engram/layer/checkpoint.hpp"
#include "engram/layer/decode_state.hpp"
#include "engram/layer/detail/kv_projection.hpp"
#include "engram/layer/detail/layer_common.hpp"
#include "engram/nn/any_linear.hpp"
#include "engram/nn/v41_projection.hpp"

namespace engram {

/// An Engram layer.
/// @tparam Scalar float (the common case) or double.
/// @tparam Block the per-token step: DemoBlock (the default) or V41Block.
/// @tparam HashPolicy the n-gram hash of the token-id front end (NumpyMultiplyXor: the reference).
template <class Scalar = float, class Block = DemoBlock,
          NgramHashPolicy HashPolicy = NumpyMultiplyXor>
class EngramLayerT {
  static_assert(EngramBlock<Block>, "EngramLayerT: Block must model EngramBlock (block.hpp)");

 public:
  using BlockType = Block;
  using Weights = typename Block::template Weights<Scalar>;
  using State = EngramDecodeStateT<Scalar>;
  using Workspace = EngramWorkspaceT<Scalar>;
  using Hasher = NgramHasherT<HashPolicy>;

  /// A layer over loaded weights, with an optional token-id front end.
  explicit EngramLayerT(std::shared_ptr<const Weights> weights,
                        std::shared_ptr<const Hasher> hasher = nullptr);

  /// Loads from a checkpoint (checkpoint.hpp: names, shapes, options; V41Block needs
  /// options.column_rows, the hasher's primes).
  static EngramLayerT load(const EngramConfig& config, std::shared_ptr<const SafetensorsFile> file,
                           const CheckpointOptions& options = {});
  static EngramLayerT load(const EngramConfig& config, const std::string& path,
                           const CheckpointOptions& options = {});
  /// Loads with a token-id front end; the table's column sizes are the hasher's primes.
  static EngramLayerT load(const EngramConfig& config, std::shared_ptr<const SafetensorsFile> file,
                           std::shared_ptr<const Hasher> hasher, CheckpointOptions options = {});

  const EngramConfig& config() const noexcept { return weights_->config; }
  const Weights& weights() const noexcept { return *weights_; }
  int64_t hidden_size() const noexcept { return d_; }
  int64_t hc_mult() const noexcept { return hc_; }
  int64_t num_columns() const noexcept { return cols_; }
  /// The stacked keys + value projection (Scalar or bf16 weights: CheckpointOptions; empty when
  /// the weights are FP8: fp8_projection()).
  const AnyLinearT<Scalar>& projection() const noexcept { return kv_.dense(); }
  /// True when wkv is FP8 (V4.1 as released).
  bool has_fp8_projection() const noexcept { return kv_.is_fp8(); }
  const V41Projection& fp8_projection() const noexcept { return kv_.fp8(); }
  /// The block's per-token step (its gate, and DemoBlock's short_conv()).
  const typename Block::template Step<Scalar>& step() const noexcept { return step_; }
  const auto& gate() const noexcept { return step_.gate(); }
  // A member template (not a constrained member): clang 14 instantiates constrained members' bodies
  // in an explicit instantiation (src/engram_instantiations.cpp) even when the constraint fails.
  template <class B = Block>
  requires B::kHasHistory const auto& short_conv() const noexcept { return step_.short_conv(); }
  /// The token-id front end, or null.
  const Hasher* hasher() const noexcept { return hasher_.get(); }

  /// A state at the start of a sequence, able to roll back up to max_rollback tokens
  /// (speculative decoding; decode_state.hpp gives the memory cost).
  State make_state(int64_t max_rollback = 0) const {
    return State(step_.history_rows(), hc_ * d_,
                 hasher_ ? hasher_->initial_state() : NgramHashState{}, max_rollback);
  }

  /// Pre-sizes `ws` for calls of up to `tokens` tokens in up to `sequences` sequences.
  void reserve(Workspace& ws, int64_t tokens, int64_t sequences = 1) const;

  /// Whole sequences: hash_ids [B, T, cols], hidden and out [B, T, hc, d], live empty or [B, T].
  void forward(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden, int64_t batch,
               int64_t seq_len, std::span<Scalar> out, Workspace& ws,
               std::span<const uint8_t> live = {}) const;

  /// A chunk of T new tokens for each of B sequences, continuing and updating states[b].
  void forward(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden, int64_t batch,
               int64_t seq_len, std::span<Scalar> out, std::span<State* const> states,
               Workspace& ws, std::span<const uint8_t> live = {}) const;

  /// Chunks of lengths[s] tokens for sequences s, packed back to back ([sum(lengths), ...]);
  /// states empty (each chunk is a whole sequence) or one per sequence; live empty or
  /// [sum(lengths)].
  void forward_ragged(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden,
                      std::span<const int64_t> lengths, std::span<Scalar> out,
                      std::span<State* const> states, Workspace& ws,
                      std::span<const uint8_t> live = {}) const;

  /// forward_ragged from token ids [sum(lengths)] (needs a hasher); with states, each sequence
  /// continues and advances its hash history.
  void forward_tokens_ragged(std::span<const int64_t> input_ids, std::span<const Scalar> hidden,
                             std::span<const int64_t> lengths, std::span<Scalar> out,
                             std::span<State* const> states, Workspace& ws,
                             std::span<const uint8_t> live = {}) const;

  /// Whole sequences from token ids [B, T] (needs a hasher); live empty or [B, T].
  void forward_tokens(std::span<const int64_t> input_ids, std::span<const Scalar> hidden,
                      int64_t batch, int64_t seq_len, std::span<Scalar> out, Workspace& ws,
                      std::span<const uint8_t> live = {}) const;

  /// A chunk of T token ids for each of B sequences, continuing and updating states[b].
  void forward_tokens(std::span<const int64_t> input_ids, std::span<const Scalar> hidden,
                      int64_t batch, int64_t seq_len, std::span<Scalar> out,
                      std::span<State* const> states, Workspace& ws,
                      std::span<const uint8_t> live = {}) const;

  /// Whole sequences with the memory e given instead of gathered (rows fetched from a RowTier and
  /// decoded, memory/tiers/tiered_memory.hpp): memory [B, T, cols * row_dim] as the table's gather
  /// would produce it (dead tokens' rows are ignored). Equals forward(hash_ids, ...) when memory is
  /// the gather of hash_ids.
  void forward_memory(std::span<const Scalar> memory, std::span<const Scalar> hidden, int64_t batch,
                      int64_t seq_len, std::span<Scalar> out, Workspace& ws,
                      std::span<const uint8_t> live = {}) const;

  /// As forward_memory, continuing and updating states[b] (conv history and position; the hash
  /// history is advanced by hash_tokens, which produced the ids the memory was fetched for).
  void forward_memory(std::span<const Scalar> memory, std::span<const Scalar> hidden, int64_t batch,
                      int64_t seq_len, std::span<Scalar> out, std::span<State* const> states,
                      Workspace& ws, std::span<const uint8_t> live = {}) const;

  /// The token-id front end alone: hashes token ids [B, T] into hash_ids [B, T, cols] (needs a
  /// hasher), continuing and advancing states[b]'s hash history when states are given (one per
  /// sequence). Use it to know the rows of a chunk before the layer runs (prefetch).
  void hash_tokens(std::span<const int64_t> input_ids, int64_t batch, int64_t seq_len,
                   std::span<int64_t> hash_ids, std::span<State* const> states = {},
                   std::span<const uint8_t> live = {}) const;

  /// The gather step of forward alone: memory [B, T, cols * row_dim] = the table rows of hash_ids
  /// [B, T, cols] (ids range-checked, rows checked finite: forward's code, for profiling and for
  /// callers that keep the memory). Needs the table in RAM (not table_in_tier).
  void gather(std::span<const int64_t> hash_ids, int64_t batch, int64_t seq_len,
              std::span<Scalar> memory, Workspace& ws) const;

  /// The readable spec (the block's forward_reference over the reference gather): whole
  /// sequences; allocates.
  void forward_reference(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden,
                         int64_t batch, int64_t seq_len, std::span<Scalar> out,
                         std::span<const uint8_t> live = {}) const;

 private:
  static constexpr std::string_view kWho = Block::kName;

  void check_activations(std::span<const Scalar> hidden, std::span<Scalar> out,
                         std::span<const uint8_t> live, int64_t tokens) const {
    detail::check_size(kWho, "hidden", hidden.size(), tokens, hc_ * d_, "[B, T, hc, d]");
    detail::check_size(kWho, "out", out.size(), tokens, hc_ * d_, "[B, T, hc, d]");
    if (!live.empty()) detail::check_size(kWho, "live", live.size(), tokens, 1, "[B, T]");
  }

  void check_batch_states(std::span<State* const> states, int64_t batch) const {
    ENGRAM_CHECK(static_cast<int64_t>(states.size()) == batch, kWho, ": ", states.size(),
                 " states for a batch of ", batch, " sequences");
  }

  const Hasher& require_hasher() const {
    ENGRAM_CHECK(hasher_ != nullptr, kWho,
                 ": forward_tokens needs a hasher (load the layer with an NgramHasher)");
    return *hasher_;
  }

  void check_states(std::span<State* const> states) const {
    const int64_t rows = step_.history_rows(), c = hc_ * d_;
    for (size_t s = 0; s < states.size(); ++s) {
      ENGRAM_CHECK(states[s] != nullptr, kWho, ": state ", s, " is null");
      ENGRAM_CHECK(detail::DecodeStateAccess::has_shape(*states[s], rows, c), kWho, ": state ", s,
                   " has a conv history of [", states[s]->history_rows(), ", ",
                   states[s]->channels(), "], expected [", rows, ", ", c,
                   "] (make states with make_state())");
    }
  }

  void tokens_front_end(std::span<const int64_t> input_ids, std::span<const Scalar> hidden,
                        int64_t batch, int64_t seq_len, std::span<Scalar> out,
                        std::span<State* const> states, Workspace& ws,
                        std::span<const uint8_t> live, bool streaming) const;

  void memory_front_end(std::span<const Scalar> memory, std::span<const Scalar> hidden,
                        int64_t batch, int64_t seq_len, std::span<Scalar> out,
                        std::span<State* const> states, Workspace& ws,
                        std::span<const uint8_t> live, bool streaming) const;

  // out [tokens, m] = rows of ids [tokens, cols] (valid: check_hash_ids), checked finite.
  void gather_rows(const int64_t* ids, const detail::Segments& segments, const uint8_t* mask,
                   Scalar* out, Workspace& ws) const;

  // memory == nullptr: gather e from the table by hash_ids; else e = memory ([tokens, m], checked
  // by forward_memory) and hash_ids is unused.
  void run(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden,
           const detail::Segments& segments, std::span<Scalar> out, std::span<State* const> states,
           std::span<const uint8_t> live, Workspace& ws, const Scalar* memory = nullptr) const;

  std::shared_ptr<const Weights> weights_;
  std::shared_ptr<const Hasher> hasher_;
  int64_t d_ = 0;
  int64_t hc_ = 0;
  int64_t cols_ = 0;
  detail::KvProjection<Scalar> kv_;
  typename Block::template Step<Scalar> step_;
};

// The members, defined out of the class body so that they are not inline: under
// ENGRAM_EXTERN_TEMPLATES a consumer of the extern instantiations below neither instantiates nor
// compiles them (src/engram_instantiations.cpp holds the only copy).

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
EngramLayerT<Scalar, Block, HashPolicy>::EngramLayerT(std::shared_ptr<const Weights> weights,
                                                      std::shared_ptr<const Hasher> hasher)
    : weights_(std::move(weights)), hasher_(std::move(hasher)) {
  ENGRAM_CHECK(weights_ != nullptr, kWho, ": no weights");
  if (hasher_) detail::check_hasher(kWho, *hasher_, weights_->table);
  const EngramConfig& c = weights_->config;
  d_ = c.hidden_size;
  hc_ = c.hc_mult;
  cols_ = c.num_columns();
  step_ = typename Block::template Step<Scalar>(*weights_);
  kv_ = detail::KvProjection<Scalar>(kWho, *weights_);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
EngramLayerT<Scalar, Block, HashPolicy> EngramLayerT<Scalar, Block, HashPolicy>::load(
    const EngramConfig& config, std::shared_ptr<const SafetensorsFile> file,
    const CheckpointOptions& options) {
  return EngramLayerT(std::make_shared<const Weights>(
      Block::template load_weights<Scalar>(config, std::move(file), options)));
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
EngramLayerT<Scalar, Block, HashPolicy> EngramLayerT<Scalar, Block, HashPolicy>::load(
    const EngramConfig& config, const std::string& path, const CheckpointOptions& options) {
  return load(config, std::make_shared<const SafetensorsFile>(path), options);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
EngramLayerT<Scalar, Block, HashPolicy> EngramLayerT<Scalar, Block, HashPolicy>::load(
    const EngramConfig& config, std::shared_ptr<const SafetensorsFile> file,
    std::shared_ptr<const Hasher> hasher, CheckpointOptions options) {
  ENGRAM_CHECK(hasher != nullptr, kWho, "::load: no hasher");
  if (options.column_rows.empty())
    options.column_rows.assign(hasher->primes().begin(), hasher->primes().end());
  return EngramLayerT(std::make_shared<const Weights>(
                          Block::template load_weights<Scalar>(config, std::move(file), options)),
                      std::move(hasher));
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::reserve(Workspace& ws, int64_t tokens,
                                                      int64_t sequences) const {
  const int64_t m = kv_.in_features();
  ws.memory_.ensure(static_cast<size_t>(tokens * m));
  if (!std::is_same_v<Scalar, float> || kv_.is_fp8())
    ws.memory_f32_.ensure(static_cast<size_t>(tokens * m));
  ws.kv_.ensure(static_cast<size_t>(tokens * kv_.out_features()));
  if (const int64_t scratch = step_.scratch_size(tokens); scratch > 0)
    ws.step_scratch_.ensure(static_cast<size_t>(scratch));
  ws.token_segment_.ensure(static_cast<size_t>(tokens));
  ws.segment_start_.ensure(static_cast<size_t>(sequences));
  ws.hashed_ids_.ensure(static_cast<size_t>(tokens * cols_));
  ws.ids_.ensure(static_cast<size_t>(tokens * cols_));
  auto gathers = ws.gather_workspaces(detail::kernel_threads());
  for (auto& g : gathers) g.reserve(tokens * cols_);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::forward(std::span<const int64_t> hash_ids,
                                                      std::span<const Scalar> hidden, int64_t batch,
                                                      int64_t seq_len, std::span<Scalar> out,
                                                      Workspace& ws,
                                                      std::span<const uint8_t> live) const {
  run(hash_ids, hidden, detail::uniform_segments(kWho, batch, seq_len), out, {}, live, ws);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::forward(std::span<const int64_t> hash_ids,
                                                      std::span<const Scalar> hidden, int64_t batch,
                                                      int64_t seq_len, std::span<Scalar> out,
                                                      std::span<State* const> states, Workspace& ws,
                                                      std::span<const uint8_t> live) const {
  check_batch_states(states, batch);
  run(hash_ids, hidden, detail::uniform_segments(kWho, batch, seq_len), out, states, live, ws);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::forward_ragged(
    std::span<const int64_t> hash_ids, std::span<const Scalar> hidden,
    std::span<const int64_t> lengths, std::span<Scalar> out, std::span<State* const> states,
    Workspace& ws, std::span<const uint8_t> live) const {
  const auto segments = detail::ragged_segments(kWho, lengths);
  detail::check_state_count(kWho, states, segments.count, /*allow_empty=*/true);
  run(hash_ids, hidden, segments, out, states, live, ws);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::forward_tokens_ragged(
    std::span<const int64_t> input_ids, std::span<const Scalar> hidden,
    std::span<const int64_t> lengths, std::span<Scalar> out, std::span<State* const> states,
    Workspace& ws, std::span<const uint8_t> live) const {
  const auto segments = detail::ragged_segments(kWho, lengths);
  check_activations(hidden, out, live, segments.total());
  check_states(states);
  const auto ids = detail::hash_ragged_tokens(kWho, require_hasher(), input_ids, segments, live,
                                              states, ws.hashed_ids_);
  run(ids, hidden, segments, out, states, live, ws);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::forward_tokens(std::span<const int64_t> input_ids,
                                                             std::span<const Scalar> hidden,
                                                             int64_t batch, int64_t seq_len,
                                                             std::span<Scalar> out, Workspace& ws,
                                                             std::span<const uint8_t> live) const {
  tokens_front_end(input_ids, hidden, batch, seq_len, out, {}, ws, live, /*streaming=*/false);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::forward_tokens(
    std::span<const int64_t> input_ids, std::span<const Scalar> hidden, int64_t batch,
    int64_t seq_len, std::span<Scalar> out, std::span<State* const> states, Workspace& ws,
    std::span<const uint8_t> live) const {
  tokens_front_end(input_ids, hidden, batch, seq_len, out, states, ws, live, /*streaming=*/true);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::forward_memory(std::span<const Scalar> memory,
                                                             std::span<const Scalar> hidden,
                                                             int64_t batch, int64_t seq_len,
                                                             std::span<Scalar> out, Workspace& ws,
                                                             std::span<const uint8_t> live) const {
  memory_front_end(memory, hidden, batch, seq_len, out, {}, ws, live, /*streaming=*/false);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::forward_memory(
    std::span<const Scalar> memory, std::span<const Scalar> hidden, int64_t batch, int64_t seq_len,
    std::span<Scalar> out, std::span<State* const> states, Workspace& ws,
    std::span<const uint8_t> live) const {
  memory_front_end(memory, hidden, batch, seq_len, out, states, ws, live, /*streaming=*/true);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::hash_tokens(std::span<const int64_t> input_ids,
                                                          int64_t batch, int64_t seq_len,
                                                          std::span<int64_t> hash_ids,
                                                          std::span<State* const> states,
                                                          std::span<const uint8_t> live) const {
  const Hasher& hasher = require_hasher();
  detail::check_token_ids(kWho, hasher, input_ids, batch, seq_len, live);
  detail::check_size(kWho, "hash_ids", hash_ids.size(), batch * seq_len, cols_, "[B, T, cols]");
  if (states.empty()) {
    hasher.hash(input_ids, batch, seq_len, hash_ids, live);
    return;
  }
  check_batch_states(states, batch);
  check_states(states);
  detail::hash_token_chunks(kWho, hasher, input_ids, batch, seq_len, live, states, hash_ids.data());
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::forward_reference(
    std::span<const int64_t> hash_ids, std::span<const Scalar> hidden, int64_t batch,
    int64_t seq_len, std::span<Scalar> out, std::span<const uint8_t> live) const {
  const auto segments = detail::uniform_segments(kWho, batch, seq_len);
  const int64_t tokens = segments.total();
  detail::check_size(kWho, "hash_ids", hash_ids.size(), tokens, cols_, "[B, T, cols]");
  check_activations(hidden, out, live, tokens);
  std::vector<int64_t> ids(hash_ids.begin(), hash_ids.end());
  for (int64_t t = 0; t < tokens; ++t)
    if (!live.empty() && live[t] == 0) std::fill_n(ids.begin() + t * cols_, cols_, 0);
  detail::check_hash_ids(kWho, weights_->table, ids.data(), segments, nullptr);
  const std::vector<Scalar> e = detail::gather_memory_reference<Scalar>(weights_->table, ids);
  step_.forward_reference(*weights_, kv_, e.data(), hidden.data(), batch, seq_len,
                          live.empty() ? nullptr : live.data(), out.data());
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::tokens_front_end(
    std::span<const int64_t> input_ids, std::span<const Scalar> hidden, int64_t batch,
    int64_t seq_len, std::span<Scalar> out, std::span<State* const> states, Workspace& ws,
    std::span<const uint8_t> live, bool streaming) const {
  const auto segments = detail::uniform_segments(kWho, batch, seq_len);
  const int64_t tokens = segments.total();
  if (streaming) check_batch_states(states, batch);
  check_activations(hidden, out, live, tokens);
  check_states(states);
  const Hasher& hasher = require_hasher();
  detail::check_token_ids(kWho, hasher, input_ids, batch, seq_len, live);
  int64_t* ids = ws.hashed_ids_.ensure(static_cast<size_t>(tokens * cols_));
  if (streaming)
    detail::hash_token_chunks(kWho, hasher, input_ids, batch, seq_len, live, states, ids);
  else
    hasher.hash(input_ids, batch, seq_len,
                std::span<int64_t>(ids, static_cast<size_t>(tokens * cols_)), live);
  run({ids, static_cast<size_t>(tokens * cols_)}, hidden, segments, out, states, live, ws);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::memory_front_end(
    std::span<const Scalar> memory, std::span<const Scalar> hidden, int64_t batch, int64_t seq_len,
    std::span<Scalar> out, std::span<State* const> states, Workspace& ws,
    std::span<const uint8_t> live, bool streaming) const {
  if (streaming) check_batch_states(states, batch);
  const auto segments = detail::uniform_segments(kWho, batch, seq_len);
  detail::check_size(kWho, "memory", memory.size(), segments.total(), kv_.in_features(),
                     "[B, T, cols * row_dim]");
  if (memory.empty()) return check_activations(hidden, out, live, 0);  // no tokens
  run({}, hidden, segments, out, states, live, ws, memory.data());
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::gather(std::span<const int64_t> hash_ids,
                                                     int64_t batch, int64_t seq_len,
                                                     std::span<Scalar> memory,
                                                     Workspace& ws) const {
  const auto segments = detail::uniform_segments(kWho, batch, seq_len);
  const int64_t tokens = segments.total();
  detail::check_size(kWho, "hash_ids", hash_ids.size(), tokens, cols_, "[B, T, cols]");
  detail::check_size(kWho, "memory", memory.size(), tokens, kv_.in_features(),
                     "[B, T, cols * row_dim]");
  detail::check_hash_ids(kWho, weights_->table, hash_ids.data(), segments, nullptr);
  if (tokens > 0) gather_rows(hash_ids.data(), segments, nullptr, memory.data(), ws);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::gather_rows(const int64_t* ids,
                                                          const detail::Segments& segments,
                                                          const uint8_t* mask, Scalar* out,
                                                          Workspace& ws) const {
  // The gather checks each block of rows while it is in cache; the check names a bad one.
  if (detail::gather_memory(weights_->table, ids, segments.total(), out, ws.memory_f32_,
                            ws.gather_workspaces(detail::kernel_threads()), mask) >= 0)
    detail::check_finite_memory(kWho, weights_->table, out, ids, segments, mask);
}

template <class Scalar, class Block, NgramHashPolicy HashPolicy>
void EngramLayerT<Scalar, Block, HashPolicy>::run(
    std::span<const int64_t> hash_ids, std::span<const Scalar> hidden,
    const detail::Segments& segments, std::span<Scalar> out, std::span<State* const> states,
    std::span<const uint8_t> live, Workspace& ws, const Scalar* memory) const {
  const int64_t tokens = segments.total();
  if (memory == nullptr)
    detail::check_size(kWho, "hash_ids", hash_ids.size(), tokens, cols_, "[B, T, cols]");
  check_activations(hidden, out, live, tokens);
  check_states(states);
  const uint8_t* mask = live.empty() ? nullptr : live.data();
  if (memory == nullptr)
    detail::check_hash_ids(kWho, weights_->table, hash_ids.data(), segments, mask);
  if constexpr (!Block::kChecksHidden)
    detail::check_finite_hidden(kWho, hidden.data(), segments, hc_, d_, mask);
  if (tokens == 0) return;

  const int64_t n = kv_.out_features(), m = kv_.in_features();
  int64_t* token_segment = ws.token_segment_.ensure(static_cast<size_t>(tokens));
  int64_t* segment_start = ws.segment_start_.ensure(static_cast<size_t>(segments.count));
  for (int64_t s = 0, token = 0; s < segments.count; ++s) {
    segment_start[s] = token;
    for (const int64_t end = token + segments.length(s); token < end; ++token)
      token_segment[token] = s;
  }

  const Scalar* e = memory;
  if (memory == nullptr) {
    const int64_t* ids = hash_ids.data();
    if (mask != nullptr) {  // dead tokens read row 0 of each column
      int64_t* safe = ws.ids_.ensure(static_cast<size_t>(tokens * cols_));
      for (int64_t t = 0; t < tokens; ++t) {
        if (mask[t] == 0)
          std::fill_n(safe + t * cols_, cols_, int64_t{0});
        else
          std::copy_n(ids + t * cols_, cols_, safe + t * cols_);
      }
      ids = safe;
    }
    Scalar* gathered = ws.memory_.ensure(static_cast<size_t>(tokens * m));
    gather_rows(ids, segments, mask, gathered, ws);
    e = gathered;
  } else {
    detail::check_finite_external_memory(kWho, memory, segments, cols_, m / cols_, mask);
  }
  Scalar* kv = ws.kv_.ensure(static_cast<size_t>(tokens * n));
  kv_.forward(e, tokens, kv, ws.memory_f32_);

  const int64_t scratch_size = step_.scratch_size(tokens);
  Scalar* scratch =
      scratch_size > 0 ? ws.step_scratch_.ensure(static_cast<size_t>(scratch_size)) : nullptr;
  const int64_t bad = step_.forward({kv, hidden.data(), out.data(), tokens, mask, token_segment,
                                     segment_start, segments.count, states, scratch});
  // A block that checks the hidden states found a non-finite one and wrote nothing: the check
  // names its sequence, position, branch and channel.
  if (bad >= 0) detail::check_finite_hidden(kWho, hidden.data(), segments, hc_, d_, mask);
}

/// DeepSeek-V4.1's released Engram layer (residual included, FP8 table and wkv).
template <class Scalar = float, NgramHashPolicy HashPolicy = NumpyMultiplyXor>
using V41EngramLayerT = EngramLayerT<Scalar, V41Block, HashPolicy>;
/// The former name of V41EngramLayerT.
template <class Scalar = float, NgramHashPolicy HashPolicy = NumpyMultiplyXor>
using FusedEngramLayerT = V41EngramLayerT<Scalar, HashPolicy>;

using EngramLayer = EngramLayerT<float>;
using V41EngramLayer = V41EngramLayerT<float>;
using FusedEngramLayer = V41EngramLayer;
using EngramDecodeState = EngramDecodeStateT<float>;
using EngramWorkspace = EngramWorkspaceT<float>;

#ifdef ENGRAM_EXTERN_TEMPLATES
// Compiled once in src/engram_instantiations.cpp (engram::instantiations): a consumer compiles
// only the inline accessors of these two layers, not their load/forward paths.
extern template class EngramLayerT<float, DemoBlock>;
extern template class EngramLayerT<float, V41Block>;
#endif

}  // namespace engram
