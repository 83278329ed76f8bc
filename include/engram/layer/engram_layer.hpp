// engram/layer/engram_layer.hpp: the Engram layer of DeepSeek's demo module (engram_demo_v1).
//
// Placed between transformer blocks as `hidden = hidden + engram(hash_ids, hidden)`. Shapes:
//   hash_ids [B, T, cols] int64 per-column ids (without table offsets), cols = (N - 1) * H
//   hidden   [B, T, hc, d] (hc = hc_mult hyper-connection branches, d = hidden_size)
//   out      [B, T, hc, d] (the layer's output only: the residual add is the caller's)
// Semantics (e = concat over columns c of table[offsets[c] + hash_ids[b, t, c]], [m]):
//   v       = W_v e + b_v                                     [d], shared by the branches
//   alpha_i = sigmoid(signed_sqrt(<RMSNorm1_i(W_k,i e + b_k,i), RMSNorm2_i(h_i)> / sqrt(d)))
//   y_i     = alpha_i * v                                     [hc, d]   (gate.hpp)
//   out     = y + ShortConv(y)   (branch RMSNorms, causal depthwise conv, SiLU; short_conv.hpp)
// Fast path: one gather, one GEMM of e against the stacked [(hc + 1) * d, m] keys+value projection,
// one pass fusing bias, gate, y and the conv norms per token, one conv pass over time (reading a
// streaming sequence's earlier steps straight from its state's history ring). Threads:
// Eigen::nbThreads() (OpenMP builds); the per-token passes split tokens over the same count.
//
// Front ends: forward* take precomputed hash ids; forward_tokens* take token ids [B, T] and hash
// them with the layer's NgramHasherT (load the layer with one; its primes must be the table's
// column sizes). An optional `live` mask [B, T] (nonzero = live) marks dead tokens, hashed as
// pad_id. forward_memory* take the memory e [B, T, cols * row_dim] instead of ids, for rows
// fetched from a RowTier (SSD, remote store; memory/tiered_memory.hpp) ahead of the layer;
// hash_tokens is the hashing front end alone (to know a chunk's rows before the layer runs).
//
// Streaming: forward(..., states, ...) continues each sequence from its EngramDecodeStateT (conv
// history, hash history, position) and updates it; any chunking (1 token, 7 tokens, ragged) gives
// the whole-sequence output up to float rounding. forward_ragged / forward_tokens_ragged take
// per-sequence chunk lengths (tokens packed back to back, one state each, lengths 0 allowed).
// Speculative decoding: make_state(k) states roll back up to k tokens (decode_state.hpp).
//
// Guarantees: inputs are validated (sizes, hash id ranges naming sequence/position/column, state
// shapes, finite hidden states) before any kernel runs, and the gathered rows are checked finite
// before `out` is written (a NaN/inf row names the table row and the token that used it); kernels
// are noexcept. With a workspace reused (or reserve()d),
// forward calls do not allocate, apart from Eigen's internal GEMM blocking buffers. `out` may be
// the same buffer as `hidden` (exactly, not a partial overlap). forward_reference is the readable
// spec (plain loops following the PyTorch module; allocates; whole sequences only). Ownership: the
// layer shares its weights (shared_ptr); copies of a layer share them. Thread safety: const methods
// may run concurrently with distinct workspaces and states. Not guaranteed: bitwise equality with
// PyTorch, or between thread counts (GEMM blocking may differ).
//
// Example:
//   auto file = std::make_shared<const engram::SafetensorsFile>("model.safetensors");
//   auto hasher = std::make_shared<const engram::NgramHasher>(config, lookup, /*layer_id=*/15);
//   auto layer = engram::EngramLayer::load(config, file, hasher, {.prefix = "layers.15.engram."});
//   engram::EngramLayer::Workspace ws;
//   layer.forward_tokens(input_ids, hidden, B, T, out, ws);        // or forward(hash_ids, ...)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engram/config.hpp"
#include "engram/detail/parallel.hpp"
#include "engram/error.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/checkpoint.hpp"
#include "engram/layer/decode_state.hpp"
#include "engram/layer/detail/layer_common.hpp"
#include "engram/nn/any_linear.hpp"
#include "engram/nn/detail/eigen_support.hpp"
#include "engram/nn/gate.hpp"
#include "engram/nn/linear.hpp"
#include "engram/nn/rms_norm.hpp"
#include "engram/nn/short_conv.hpp"

namespace engram {

/// The demo Engram layer.
/// @tparam Scalar float (the common case) or double.
/// @tparam HashPolicy the n-gram hash of the token-id front end (NumpyMultiplyXor: the reference).
template <class Scalar = float, NgramHashPolicy HashPolicy = NumpyMultiplyXor>
class EngramLayerT {
 public:
  using Weights = EngramWeightsT<Scalar>;
  using State = EngramDecodeStateT<Scalar>;
  using Workspace = EngramWorkspaceT<Scalar>;
  using Hasher = NgramHasherT<HashPolicy>;
  /// Largest hc_mult supported (per-token gates live on the stack).
  static constexpr int64_t kMaxHcMult = 64;

  /// A layer over loaded weights, with an optional token-id front end.
  explicit EngramLayerT(std::shared_ptr<const Weights> weights,
                        std::shared_ptr<const Hasher> hasher = nullptr)
      : weights_(std::move(weights)), hasher_(std::move(hasher)) {
    ENGRAM_CHECK(weights_ != nullptr, "EngramLayer: no weights");
    if (hasher_) detail::check_hasher(kWho, *hasher_, weights_->table);
    const EngramConfig& c = weights_->config;
    ENGRAM_CHECK(c.hc_mult <= kMaxHcMult, "EngramLayer: hc_mult ", c.hc_mult,
                 " exceeds the supported maximum of ", kMaxHcMult);
    d_ = c.hidden_size;
    hc_ = c.hc_mult;
    cols_ = c.num_columns();
    const int64_t m = c.memory_dim();
    kv_ = detail::stacked_projection<Scalar>(*weights_, m, weights_->kv_bias);
    gate_ = EngramGateT<Scalar>(d_, hc_, weights_->key_norm, weights_->query_norm, kGateNormEps);
    conv_ = ShortConvT<Scalar>(d_, hc_, c.kernel_size, c.max_ngram_size, weights_->conv_weight,
                               weights_->conv_norm, kConvNormEps);
  }

  /// Loads from a checkpoint (see checkpoint.hpp for names, shapes and options).
  static EngramLayerT load(const EngramConfig& config, std::shared_ptr<const SafetensorsFile> file,
                           const CheckpointOptions& options = {}) {
    return EngramLayerT(std::make_shared<const Weights>(
        load_engram_weights<Scalar>(config, std::move(file), options)));
  }
  static EngramLayerT load(const EngramConfig& config, const std::string& path,
                           const CheckpointOptions& options = {}) {
    return load(config, std::make_shared<const SafetensorsFile>(path), options);
  }
  /// Loads with a token-id front end; the table's column sizes are the hasher's primes.
  static EngramLayerT load(const EngramConfig& config, std::shared_ptr<const SafetensorsFile> file,
                           std::shared_ptr<const Hasher> hasher, CheckpointOptions options = {}) {
    ENGRAM_CHECK(hasher != nullptr, "EngramLayer::load: no hasher");
    if (options.column_rows.empty())
      options.column_rows.assign(hasher->primes().begin(), hasher->primes().end());
    return EngramLayerT(std::make_shared<const Weights>(
                            load_engram_weights<Scalar>(config, std::move(file), options)),
                        std::move(hasher));
  }

  const EngramConfig& config() const noexcept { return weights_->config; }
  const Weights& weights() const noexcept { return *weights_; }
  int64_t hidden_size() const noexcept { return d_; }
  int64_t hc_mult() const noexcept { return hc_; }
  int64_t num_columns() const noexcept { return cols_; }
  /// The stacked keys + value projection (Scalar or bf16 weights: CheckpointOptions).
  const AnyLinearT<Scalar>& projection() const noexcept { return kv_; }
  const EngramGateT<Scalar>& gate() const noexcept { return gate_; }
  const ShortConvT<Scalar>& short_conv() const noexcept { return conv_; }
  /// The token-id front end, or null.
  const Hasher* hasher() const noexcept { return hasher_.get(); }

  /// A state at the start of a sequence, able to roll back up to max_rollback tokens
  /// (speculative decoding; decode_state.hpp gives the memory cost).
  State make_state(int64_t max_rollback = 0) const {
    return State(conv_.history_rows(), hc_ * d_,
                 hasher_ ? hasher_->initial_state() : NgramHashState{}, max_rollback);
  }

  /// Pre-sizes `ws` for calls of up to `tokens` tokens in up to `sequences` sequences.
  void reserve(Workspace& ws, int64_t tokens, int64_t sequences = 1) const {
    const int64_t c = hc_ * d_;
    ws.memory_.ensure(static_cast<size_t>(tokens * kv_.in_features()));
    if constexpr (!std::is_same_v<Scalar, float>)
      ws.memory_f32_.ensure(static_cast<size_t>(tokens * kv_.in_features()));
    ws.kv_.ensure(static_cast<size_t>(tokens * kv_.out_features()));
    ws.normed_.ensure(static_cast<size_t>(tokens * c));
    ws.token_segment_.ensure(static_cast<size_t>(tokens));
    ws.segment_start_.ensure(static_cast<size_t>(sequences));
    ws.hashed_ids_.ensure(static_cast<size_t>(tokens * cols_));
    auto gathers = ws.gather_workspaces(detail::kernel_threads());
    for (auto& g : gathers) g.reserve(tokens * cols_);
  }

  /// Whole sequences: hash_ids [B, T, cols], hidden and out [B, T, hc, d].
  void forward(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden, int64_t batch,
               int64_t seq_len, std::span<Scalar> out, Workspace& ws) const {
    run(hash_ids, hidden, detail::uniform_segments(kWho, batch, seq_len), out, {}, ws);
  }

  /// A chunk of T new tokens for each of B sequences, continuing and updating states[b].
  void forward(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden, int64_t batch,
               int64_t seq_len, std::span<Scalar> out, std::span<State* const> states,
               Workspace& ws) const {
    ENGRAM_CHECK(static_cast<int64_t>(states.size()) == batch, kWho, ": ", states.size(),
                 " states for a batch of ", batch, " sequences");
    run(hash_ids, hidden, detail::uniform_segments(kWho, batch, seq_len), out, states, ws);
  }

  /// Chunks of lengths[s] tokens for sequences s, packed back to back ([sum(lengths), ...]);
  /// states empty (each chunk is a whole sequence) or one per sequence.
  void forward_ragged(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden,
                      std::span<const int64_t> lengths, std::span<Scalar> out,
                      std::span<State* const> states, Workspace& ws) const {
    ENGRAM_CHECK(states.empty() || states.size() == lengths.size(), kWho, ": ", states.size(),
                 " states for ", lengths.size(), " sequences");
    run(hash_ids, hidden, detail::ragged_segments(kWho, lengths), out, states, ws);
  }

  /// forward_ragged from token ids [sum(lengths)] (needs a hasher); live empty or
  /// [sum(lengths)]. With states, each sequence continues and advances its hash history.
  void forward_tokens_ragged(std::span<const int64_t> input_ids, std::span<const Scalar> hidden,
                             std::span<const int64_t> lengths, std::span<Scalar> out,
                             std::span<State* const> states, Workspace& ws,
                             std::span<const uint8_t> live = {}) const {
    const auto segments = detail::ragged_segments(kWho, lengths);
    check_args_tokens(hidden, out, segments.total());
    check_states(states);
    const auto ids = detail::hash_ragged_tokens(kWho, require_hasher(), input_ids, segments, live,
                                                states, ws.hashed_ids_);
    run(ids, hidden, segments, out, states, ws);
  }

  /// Whole sequences from token ids [B, T] (needs a hasher); live empty or [B, T].
  void forward_tokens(std::span<const int64_t> input_ids, std::span<const Scalar> hidden,
                      int64_t batch, int64_t seq_len, std::span<Scalar> out, Workspace& ws,
                      std::span<const uint8_t> live = {}) const {
    const auto segments = detail::uniform_segments(kWho, batch, seq_len);
    const int64_t tokens = segments.total();
    check_args_tokens(hidden, out, tokens);
    const Hasher& hasher = require_hasher();
    detail::check_token_ids(kWho, hasher, input_ids, batch, seq_len, live);
    int64_t* ids = ws.hashed_ids_.ensure(static_cast<size_t>(tokens * cols_));
    hasher.hash(input_ids, batch, seq_len,
                std::span<int64_t>(ids, static_cast<size_t>(tokens * cols_)), live);
    run({ids, static_cast<size_t>(tokens * cols_)}, hidden, segments, out, {}, ws);
  }

  /// A chunk of T token ids for each of B sequences, continuing and updating states[b].
  void forward_tokens(std::span<const int64_t> input_ids, std::span<const Scalar> hidden,
                      int64_t batch, int64_t seq_len, std::span<Scalar> out,
                      std::span<State* const> states, Workspace& ws,
                      std::span<const uint8_t> live = {}) const {
    const auto segments = detail::uniform_segments(kWho, batch, seq_len);
    const int64_t tokens = segments.total();
    ENGRAM_CHECK(static_cast<int64_t>(states.size()) == batch, kWho, ": ", states.size(),
                 " states for a batch of ", batch, " sequences");
    check_args_tokens(hidden, out, tokens);
    check_states(states);
    const Hasher& hasher = require_hasher();
    detail::check_token_ids(kWho, hasher, input_ids, batch, seq_len, live);
    int64_t* ids = ws.hashed_ids_.ensure(static_cast<size_t>(tokens * cols_));
    detail::hash_token_chunks(kWho, hasher, input_ids, batch, seq_len, live, states, ids);
    run({ids, static_cast<size_t>(tokens * cols_)}, hidden, segments, out, states, ws);
  }

  /// Whole sequences with the memory e given instead of gathered (rows fetched from a RowTier and
  /// decoded, memory/tiered_memory.hpp): memory [B, T, cols * row_dim] as the table's gather
  /// would produce it; hidden and out [B, T, hc, d]. Equals forward(hash_ids, ...) when memory is
  /// the gather of hash_ids.
  void forward_memory(std::span<const Scalar> memory, std::span<const Scalar> hidden, int64_t batch,
                      int64_t seq_len, std::span<Scalar> out, Workspace& ws) const {
    const auto segments = detail::uniform_segments(kWho, batch, seq_len);
    check_memory(memory, segments.total());
    if (memory.empty()) return check_args_tokens(hidden, out, 0);  // no tokens
    run({}, hidden, segments, out, {}, ws, memory.data());
  }

  /// As forward_memory, continuing and updating states[b] (the conv history and position; the
  /// hash history is advanced by hash_tokens, which produced the ids the memory was fetched for).
  void forward_memory(std::span<const Scalar> memory, std::span<const Scalar> hidden, int64_t batch,
                      int64_t seq_len, std::span<Scalar> out, std::span<State* const> states,
                      Workspace& ws) const {
    ENGRAM_CHECK(static_cast<int64_t>(states.size()) == batch, kWho, ": ", states.size(),
                 " states for a batch of ", batch, " sequences");
    const auto segments = detail::uniform_segments(kWho, batch, seq_len);
    check_memory(memory, segments.total());
    if (memory.empty()) return check_args_tokens(hidden, out, 0);  // no tokens
    run({}, hidden, segments, out, states, ws, memory.data());
  }

  /// The token-id front end alone: hashes token ids [B, T] into hash_ids [B, T, cols] (needs a
  /// hasher), continuing and advancing states[b]'s hash history when states are given (one per
  /// sequence). Use it to know the rows of a chunk before the layer runs (prefetch).
  void hash_tokens(std::span<const int64_t> input_ids, int64_t batch, int64_t seq_len,
                   std::span<int64_t> hash_ids, std::span<State* const> states = {},
                   std::span<const uint8_t> live = {}) const {
    const Hasher& hasher = require_hasher();
    detail::check_token_ids(kWho, hasher, input_ids, batch, seq_len, live);
    detail::check_size(kWho, "hash_ids", hash_ids.size(), batch * seq_len, cols_, "[B, T, cols]");
    if (states.empty()) {
      hasher.hash(input_ids, batch, seq_len, hash_ids, live);
      return;
    }
    ENGRAM_CHECK(static_cast<int64_t>(states.size()) == batch, kWho, ": ", states.size(),
                 " states for a batch of ", batch, " sequences");
    check_states(states);
    detail::hash_token_chunks(kWho, hasher, input_ids, batch, seq_len, live, states,
                              hash_ids.data());
  }

  /// The readable spec: the PyTorch module step by step (separate key projections and norms, plain
  /// loops, double sums). Whole sequences; allocates.
  void forward_reference(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden,
                         int64_t batch, int64_t seq_len, std::span<Scalar> out) const {
    const auto segments = detail::uniform_segments(kWho, batch, seq_len);
    const int64_t tokens = segments.total(), c = hc_ * d_, m = kv_.in_features();
    check_args(hash_ids, hidden, out, tokens);
    detail::check_hash_ids(kWho, weights_->table, hash_ids.data(), segments, nullptr);
    const std::vector<Scalar> e =
        detail::gather_memory_reference<Scalar>(weights_->table, hash_ids);
    const Weights& w = *weights_;
    std::vector<Scalar> key(static_cast<size_t>(d_)), value(static_cast<size_t>(d_));
    std::vector<Scalar> y(static_cast<size_t>(tokens * c)), conv(static_cast<size_t>(tokens * c));
    for (int64_t t = 0; t < tokens; ++t) {
      const Scalar* et = e.data() + t * m;
      detail::reference_projection(w, et, m, hc_ * d_, d_, w.kv_bias.data() + hc_ * d_,
                                   value.data());
      for (int64_t i = 0; i < hc_; ++i) {
        detail::reference_projection(w, et, m, i * d_, d_, w.kv_bias.data() + i * d_, key.data());
        const Scalar alpha = reference::engram_gate(key.data(), hidden.data() + t * c + i * d_,
                                                    w.key_norm.data() + i * d_,
                                                    w.query_norm.data() + i * d_, d_, kGateNormEps);
        for (int64_t j = 0; j < d_; ++j) y[t * c + i * d_ + j] = alpha * value[j];
      }
    }
    for (int64_t b = 0; b < batch; ++b)
      reference::short_conv(y.data() + b * seq_len * c, seq_len, hc_, d_, config().kernel_size,
                            config().max_ngram_size, w.conv_weight.data(), w.conv_norm.data(),
                            conv.data() + b * seq_len * c, kConvNormEps);
    for (int64_t i = 0; i < tokens * c; ++i) out[i] = y[i] + conv[i];
  }

 private:
  static constexpr std::string_view kWho = "EngramLayer";

  void check_args(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden,
                  std::span<Scalar> out, int64_t tokens) const {
    detail::check_size(kWho, "hash_ids", hash_ids.size(), tokens, cols_, "[B, T, cols]");
    detail::check_size(kWho, "hidden", hidden.size(), tokens, hc_ * d_, "[B, T, hc, d]");
    detail::check_size(kWho, "out", out.size(), tokens, hc_ * d_, "[B, T, hc, d]");
  }

  void check_args_tokens(std::span<const Scalar> hidden, std::span<Scalar> out,
                         int64_t tokens) const {
    detail::check_size(kWho, "hidden", hidden.size(), tokens, hc_ * d_, "[B, T, hc, d]");
    detail::check_size(kWho, "out", out.size(), tokens, hc_ * d_, "[B, T, hc, d]");
  }

  void check_memory(std::span<const Scalar> memory, int64_t tokens) const {
    detail::check_size(kWho, "memory", memory.size(), tokens, kv_.in_features(),
                       "[B, T, cols * row_dim]");
  }

  const Hasher& require_hasher() const {
    ENGRAM_CHECK(hasher_ != nullptr, kWho,
                 ": forward_tokens needs a hasher (load the layer with an NgramHasher)");
    return *hasher_;
  }

  void check_states(std::span<State* const> states) const {
    for (size_t s = 0; s < states.size(); ++s) {
      ENGRAM_CHECK(states[s] != nullptr, kWho, ": state ", s, " is null");
      ENGRAM_CHECK(states[s]->history_rows_ == conv_.history_rows() &&
                       states[s]->channels_ == hc_ * d_ &&
                       static_cast<int64_t>(states[s]->conv_history_.size()) ==
                           states[s]->ring_rows_ * hc_ * d_,
                   kWho, ": state ", s, " has a conv history of [", states[s]->history_rows_, ", ",
                   states[s]->channels_, "], expected [", conv_.history_rows(), ", ", hc_ * d_,
                   "] (make states with make_state())");
    }
  }

  // memory == nullptr: gather e from the table by hash_ids; else e = memory ([tokens, m], checked
  // by forward_memory) and hash_ids is unused.
  void run(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden,
           const detail::Segments& segments, std::span<Scalar> out, std::span<State* const> states,
           Workspace& ws, const Scalar* memory = nullptr) const {
    const int64_t tokens = segments.total();
    if (memory == nullptr) {
      check_args(hash_ids, hidden, out, tokens);
    } else {
      check_args_tokens(hidden, out, tokens);
    }
    check_states(states);
    if (memory == nullptr)
      detail::check_hash_ids(kWho, weights_->table, hash_ids.data(), segments, nullptr);
    detail::check_finite_hidden(kWho, hidden.data(), segments, hc_, d_, nullptr);
    if (tokens == 0) return;

    const int64_t c = hc_ * d_, n = kv_.out_features(), m = kv_.in_features();
    const Scalar* e = memory;
    Scalar* kv = ws.kv_.ensure(static_cast<size_t>(tokens * n));
    Scalar* normed = ws.normed_.ensure(static_cast<size_t>(tokens * c));
    int64_t* token_segment = ws.token_segment_.ensure(static_cast<size_t>(tokens));
    int64_t* segment_start = ws.segment_start_.ensure(static_cast<size_t>(segments.count));
    for (int64_t s = 0, token = 0; s < segments.count; ++s) {
      segment_start[s] = token;
      for (const int64_t end = token + segments.length(s); token < end; ++token)
        token_segment[token] = s;
    }

    if (memory == nullptr) {
      Scalar* gathered = ws.memory_.ensure(static_cast<size_t>(tokens * m));
      detail::gather_memory(weights_->table, hash_ids.data(), tokens, gathered, ws.memory_f32_,
                            ws.gather_workspaces(detail::kernel_threads()));
      detail::check_finite_memory(kWho, weights_->table, gathered, hash_ids.data(), segments,
                                  nullptr);
      e = gathered;
    } else {
      detail::check_finite_external_memory(kWho, memory, segments, cols_, m / cols_, nullptr);
    }
    kv_.forward(e, tokens, kv, /*add_bias=*/false);

    const Scalar* bias = kv_.bias().data();
    const Scalar* h = hidden.data();
    Scalar* y = out.data();
    detail::parallel_for(tokens, 16, [&](int64_t begin, int64_t end, int) {
      Scalar alpha[kMaxHcMult];
      for (int64_t t = begin; t < end; ++t) {
        Scalar* row = kv + t * n;
        detail::ArrayMap<Scalar>(row, n) += detail::ConstArrayMap<Scalar>(bias, n);
        gate_.forward(row, h + t * c, alpha);
        const detail::ConstArrayMap<Scalar> value(row + hc_ * d_, d_);
        for (int64_t i = 0; i < hc_; ++i)
          detail::ArrayMap<Scalar>(y + t * c + i * d_, d_) = alpha[i] * value;
        conv_.normalize_scaled(row + hc_ * d_, alpha, normed + t * c);
      }
    });

    // Conv over time: step p of a sequence reads steps p - back of this chunk, or before it the
    // sequence's history ring (whole sequences: zeros).
    const int64_t k = conv_.kernel_size(), dilation = conv_.dilation();
    detail::parallel_for(tokens, 16, [&](int64_t begin, int64_t end, int) {
      const Scalar* sources[ShortConvT<Scalar>::kMaxKernelSize];
      for (int64_t t = begin; t < end; ++t) {
        const int64_t s = token_segment[t], p = t - segment_start[s];
        const State* state = states.empty() ? nullptr : states[s];
        for (int64_t tap = 0; tap < k; ++tap) {
          const int64_t q = p - (k - 1 - tap) * dilation;
          if (q >= 0)
            sources[tap] = normed + (t - p + q) * c;
          else if (state != nullptr)
            sources[tap] = state->conv_row(state->position_ + q);
          else
            sources[tap] = nullptr;
        }
        conv_.convolve_row(sources, y + t * c, /*accumulate=*/true);
      }
    });

    // Each state keeps the chunk's newest normed rows (history and rollback) in its ring.
    for (int64_t s = 0; s < static_cast<int64_t>(states.size()); ++s)
      states[s]->push_conv_rows(normed + segment_start[s] * c, segments.length(s));
  }

  std::shared_ptr<const Weights> weights_;
  std::shared_ptr<const Hasher> hasher_;
  int64_t d_ = 0;
  int64_t hc_ = 0;
  int64_t cols_ = 0;
  AnyLinearT<Scalar> kv_;
  EngramGateT<Scalar> gate_;
  ShortConvT<Scalar> conv_;
};

using EngramLayer = EngramLayerT<float>;
using EngramDecodeState = EngramDecodeStateT<float>;
using EngramWorkspace = EngramWorkspaceT<float>;

}  // namespace engram
