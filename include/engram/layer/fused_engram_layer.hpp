// engram/layer/fused_engram_layer.hpp: the fused (DeepSeek V4.1-style) Engram layer.
//
// Residual included, no short conv: `hidden = engram(hash_ids, hidden)`. Shapes:
//   hash_ids [B, T, cols] int64 per-column ids (without offsets), cols = (N - 1) * H
//   hidden, out [B, T, hc, d]
//   live     empty (all live) or [B, T] uint8: a zero entry marks a dead token, whose gate is shut
//            (out = hidden exactly) and whose hash ids are neither read nor checked (the hasher's
//            convention: nonzero = live; the token-id front end also hashes dead tokens as pad_id)
// Semantics (EngramFused.forward), e = concat_c dequant(table[offsets[c] + hash_ids[b, t, c]]):
//   kv = wkv e = [key_0 .. key_{hc-1}, value]                                  [(hc + 1) * d]
//   out_i = h_i + sigmoid(g_i) * value, g_i the signed-sqrt RMS-normalised dot of
//           h_i * q_weight_i * k_weight_i and key_i (gate.hpp, FusedGateT)
// Table rows are FP8 E4M3 with one E8M0 scale per quant_block values (memory/codec.hpp).
// Fast path: one gather (decoding FP8), one GEMM against wkv, one pass of gate + residual per
// token.
//
// Front ends: forward* take precomputed hash ids; forward_tokens* take token ids [B, T] and hash
// them with the layer's NgramHasherT (the fused checkpoint has no offsets, so a hasher also
// supplies the table's column sizes). Streaming: tokens are independent given their hash ids, so
// any chunking gives the same output; the state-taking overloads advance each state's position and,
// with token ids, its hash history; forward_ragged / forward_tokens_ragged take per-sequence chunk
// lengths, as EngramLayerT's; make_state(k) states roll back up to k tokens. Guarantees, ownership,
// threads: as EngramLayerT (engram_layer.hpp). `out` may be `hidden`. forward_memory* take the
// memory e [B, T, m] instead of ids (rows fetched from a RowTier, memory/tiered_memory.hpp);
// hash_tokens is the hashing front end alone.
// FP8 wkv (V4.1 as released, weights.wkv_fp8): the memory is first quantised as the reference's
// act_quant (per block of 32: power-of-two scale, E4M3 round to nearest even), the projection runs
// on the FP8 weights with their 32 x 32 block scales (f32 sums), and kv is rounded to bf16 before
// the gate; float layers only. F32/BF16 wkv keeps the arithmetic above.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
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
#include "engram/nn/gate.hpp"
#include "engram/nn/linear.hpp"
#include "engram/nn/v41_projection.hpp"

namespace engram {

/// The fused Engram layer.
/// @tparam Scalar float (the common case) or double.
/// @tparam HashPolicy the n-gram hash of the token-id front end (NumpyMultiplyXor: the reference).
template <class Scalar = float, NgramHashPolicy HashPolicy = NumpyMultiplyXor>
class FusedEngramLayerT {
 public:
  using Weights = FusedEngramWeightsT<Scalar>;
  using State = EngramDecodeStateT<Scalar>;
  using Workspace = EngramWorkspaceT<Scalar>;
  using Hasher = NgramHasherT<HashPolicy>;

  /// A layer over loaded weights, with an optional token-id front end.
  explicit FusedEngramLayerT(std::shared_ptr<const Weights> weights,
                             std::shared_ptr<const Hasher> hasher = nullptr)
      : weights_(std::move(weights)), hasher_(std::move(hasher)) {
    ENGRAM_CHECK(weights_ != nullptr, "FusedEngramLayer: no weights");
    if (hasher_) detail::check_hasher(kWho, *hasher_, weights_->table);
    const EngramConfig& c = weights_->config;
    d_ = c.hidden_size;
    hc_ = c.hc_mult;
    cols_ = c.num_columns();
    kv_out_ = (hc_ + 1) * d_;
    kv_in_ = c.memory_dim();
    if (!weights_->wkv_fp8.empty()) {
      ENGRAM_CHECK((std::is_same_v<Scalar, float>), kWho, ": an FP8 wkv needs a float layer");
      fp8_kv_ = V41Projection(weights_->wkv_fp8, weights_->wkv_fp8_scale, kv_out_, kv_in_);
      fp8_ = true;
    } else {
      kv_ = detail::stacked_projection<Scalar>(*weights_, c.memory_dim(), {});
    }
    gate_ = FusedGateT<Scalar>(d_, hc_, weights_->q_weight, weights_->k_weight, c.rms_norm_eps);
  }

  /// Loads from a checkpoint; options.column_rows (the hasher's primes) is required.
  static FusedEngramLayerT load(const EngramConfig& config,
                                std::shared_ptr<const SafetensorsFile> file,
                                const CheckpointOptions& options) {
    return FusedEngramLayerT(std::make_shared<const Weights>(
        load_fused_engram_weights<Scalar>(config, std::move(file), options)));
  }
  static FusedEngramLayerT load(const EngramConfig& config, const std::string& path,
                                const CheckpointOptions& options) {
    return load(config, std::make_shared<const SafetensorsFile>(path), options);
  }
  /// Loads with a token-id front end; the table's column sizes are the hasher's primes.
  static FusedEngramLayerT load(const EngramConfig& config,
                                std::shared_ptr<const SafetensorsFile> file,
                                std::shared_ptr<const Hasher> hasher,
                                CheckpointOptions options = {}) {
    ENGRAM_CHECK(hasher != nullptr, "FusedEngramLayer::load: no hasher");
    if (options.column_rows.empty())
      options.column_rows.assign(hasher->primes().begin(), hasher->primes().end());
    return FusedEngramLayerT(std::make_shared<const Weights>(load_fused_engram_weights<Scalar>(
                                 config, std::move(file), options)),
                             std::move(hasher));
  }

  const EngramConfig& config() const noexcept { return weights_->config; }
  const Weights& weights() const noexcept { return *weights_; }
  int64_t hidden_size() const noexcept { return d_; }
  int64_t hc_mult() const noexcept { return hc_; }
  int64_t num_columns() const noexcept { return cols_; }
  /// The stacked keys + value projection (Scalar or bf16 weights: CheckpointOptions; empty when
  /// the weights are FP8: fp8_projection()).
  const AnyLinearT<Scalar>& projection() const noexcept { return kv_; }
  /// True when wkv is FP8 (V4.1 as released).
  bool has_fp8_projection() const noexcept { return fp8_; }
  const V41Projection& fp8_projection() const noexcept { return fp8_kv_; }
  const FusedGateT<Scalar>& gate() const noexcept { return gate_; }
  /// The token-id front end, or null.
  const Hasher* hasher() const noexcept { return hasher_.get(); }

  /// A state at the start of a sequence (no conv history in this variant), able to roll back up
  /// to max_rollback tokens (speculative decoding; decode_state.hpp).
  State make_state(int64_t max_rollback = 0) const {
    return State(0, hc_ * d_, hasher_ ? hasher_->initial_state() : NgramHashState{}, max_rollback);
  }

  /// Pre-sizes `ws` for calls of up to `tokens` tokens.
  void reserve(Workspace& ws, int64_t tokens, int64_t /*sequences*/ = 1) const {
    ws.memory_.ensure(static_cast<size_t>(tokens * kv_in_));
    if (!std::is_same_v<Scalar, float> || fp8_)
      ws.memory_f32_.ensure(static_cast<size_t>(tokens * kv_in_));
    ws.kv_.ensure(static_cast<size_t>(tokens * kv_out_));
    ws.ids_.ensure(static_cast<size_t>(tokens * cols_));
    ws.hashed_ids_.ensure(static_cast<size_t>(tokens * cols_));
    auto gathers = ws.gather_workspaces(detail::kernel_threads());
    for (auto& g : gathers) g.reserve(tokens * cols_);
  }

  /// hash_ids [B, T, cols], hidden and out [B, T, hc, d], live empty or [B, T].
  void forward(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden, int64_t batch,
               int64_t seq_len, std::span<Scalar> out, Workspace& ws,
               std::span<const uint8_t> live = {}) const {
    run(hash_ids, hidden, detail::uniform_segments(kWho, batch, seq_len), out, live, ws);
  }

  /// As forward, advancing states[b] (one per sequence) by seq_len tokens.
  void forward(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden, int64_t batch,
               int64_t seq_len, std::span<Scalar> out, std::span<State* const> states,
               Workspace& ws, std::span<const uint8_t> live = {}) const {
    check_states(states, batch);
    run(hash_ids, hidden, detail::uniform_segments(kWho, batch, seq_len), out, live, ws);
    for (State* state : states) state->position_ += seq_len;
  }

  /// Chunks of lengths[s] tokens for sequences s, packed back to back ([sum(lengths), ...]);
  /// states empty (each chunk is a whole sequence) or one per sequence (advanced by lengths[s]);
  /// live empty or [sum(lengths)].
  void forward_ragged(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden,
                      std::span<const int64_t> lengths, std::span<Scalar> out,
                      std::span<State* const> states, Workspace& ws,
                      std::span<const uint8_t> live = {}) const {
    const auto segments = detail::ragged_segments(kWho, lengths);
    detail::check_state_count(kWho, states, segments.count, /*allow_empty=*/true);
    run(hash_ids, hidden, segments, out, live, ws);
    detail::advance_states(states, segments);
  }

  /// forward_ragged from token ids [sum(lengths)] (needs a hasher); with states, each sequence
  /// continues and advances its hash history.
  void forward_tokens_ragged(std::span<const int64_t> input_ids, std::span<const Scalar> hidden,
                             std::span<const int64_t> lengths, std::span<Scalar> out,
                             std::span<State* const> states, Workspace& ws,
                             std::span<const uint8_t> live = {}) const {
    const auto segments = detail::ragged_segments(kWho, lengths);
    check_args_memory(hidden, out, live, segments.total());
    const auto ids = detail::hash_ragged_tokens(kWho, require_hasher(), input_ids, segments, live,
                                                states, ws.hashed_ids_);
    run(ids, hidden, segments, out, live, ws);
    detail::advance_states(states, segments);
  }

  /// Whole sequences from token ids [B, T] (needs a hasher).
  void forward_tokens(std::span<const int64_t> input_ids, std::span<const Scalar> hidden,
                      int64_t batch, int64_t seq_len, std::span<Scalar> out, Workspace& ws,
                      std::span<const uint8_t> live = {}) const {
    const int64_t tokens = detail::uniform_segments(kWho, batch, seq_len).total();
    const Hasher& hasher = require_hasher();
    detail::check_token_ids(kWho, hasher, input_ids, batch, seq_len, live);
    int64_t* ids = ws.hashed_ids_.ensure(static_cast<size_t>(tokens * cols_));
    const std::span<int64_t> hashed(ids, static_cast<size_t>(tokens * cols_));
    check_args(hashed, hidden, out, live, tokens);
    hasher.hash(input_ids, batch, seq_len, hashed, live);
    run(hashed, hidden, detail::uniform_segments(kWho, batch, seq_len), out, live, ws);
  }

  /// A chunk of T token ids for each of B sequences, continuing and updating states[b].
  void forward_tokens(std::span<const int64_t> input_ids, std::span<const Scalar> hidden,
                      int64_t batch, int64_t seq_len, std::span<Scalar> out,
                      std::span<State* const> states, Workspace& ws,
                      std::span<const uint8_t> live = {}) const {
    const int64_t tokens = detail::uniform_segments(kWho, batch, seq_len).total();
    check_states(states, batch);
    const Hasher& hasher = require_hasher();
    detail::check_token_ids(kWho, hasher, input_ids, batch, seq_len, live);
    int64_t* ids = ws.hashed_ids_.ensure(static_cast<size_t>(tokens * cols_));
    const std::span<int64_t> hashed(ids, static_cast<size_t>(tokens * cols_));
    check_args(hashed, hidden, out, live, tokens);
    detail::hash_token_chunks(kWho, hasher, input_ids, batch, seq_len, live, states, ids);
    run(hashed, hidden, detail::uniform_segments(kWho, batch, seq_len), out, live, ws);
    for (State* state : states) state->position_ += seq_len;
  }

  /// The memory e given instead of gathered (rows fetched from a RowTier and decoded,
  /// memory/tiered_memory.hpp): memory [B, T, cols * row_dim], hidden and out [B, T, hc, d],
  /// live empty or [B, T] (dead tokens' memory is ignored: out = hidden). Equals forward(hash_ids,
  /// ...) when memory is the gather of hash_ids.
  void forward_memory(std::span<const Scalar> memory, std::span<const Scalar> hidden, int64_t batch,
                      int64_t seq_len, std::span<Scalar> out, Workspace& ws,
                      std::span<const uint8_t> live = {}) const {
    const auto segments = detail::uniform_segments(kWho, batch, seq_len);
    detail::check_size(kWho, "memory", memory.size(), segments.total(), kv_in_,
                       "[B, T, cols * row_dim]");
    if (memory.empty()) return check_args_memory(hidden, out, live, 0);  // no tokens
    run({}, hidden, segments, out, live, ws, memory.data());
  }

  /// As forward_memory, advancing states[b] (one per sequence) by seq_len tokens.
  void forward_memory(std::span<const Scalar> memory, std::span<const Scalar> hidden, int64_t batch,
                      int64_t seq_len, std::span<Scalar> out, std::span<State* const> states,
                      Workspace& ws, std::span<const uint8_t> live = {}) const {
    check_states(states, batch);
    forward_memory(memory, hidden, batch, seq_len, out, ws, live);
    for (State* state : states) state->position_ += seq_len;
  }

  /// The token-id front end alone: hashes token ids [B, T] into hash_ids [B, T, cols] (needs a
  /// hasher), continuing and advancing states[b]'s hash history when states are given.
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
    check_states(states, batch);
    detail::hash_token_chunks(kWho, hasher, input_ids, batch, seq_len, live, states,
                              hash_ids.data());
  }

  /// The readable spec: EngramFused.forward step by step (reference gather, plain loops).
  /// Allocates.
  void forward_reference(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden,
                         int64_t batch, int64_t seq_len, std::span<Scalar> out,
                         std::span<const uint8_t> live = {}) const {
    const auto segments = detail::uniform_segments(kWho, batch, seq_len);
    const int64_t tokens = segments.total(), c = hc_ * d_, m = kv_in_;
    check_args(hash_ids, hidden, out, live, tokens);
    auto dead = [&](int64_t t) { return !live.empty() && live[t] == 0; };
    std::vector<int64_t> ids(hash_ids.begin(), hash_ids.end());
    for (int64_t t = 0; t < tokens; ++t)
      if (dead(t)) std::fill_n(ids.begin() + t * cols_, cols_, 0);
    detail::check_hash_ids(kWho, weights_->table, ids.data(), segments, nullptr);
    const std::vector<Scalar> e = detail::gather_memory_reference<Scalar>(weights_->table, ids);
    const Weights& w = *weights_;
    std::vector<Scalar> kv(static_cast<size_t>(kv_out_));
    std::vector<float> xq(static_cast<size_t>(m));
    for (int64_t t = 0; t < tokens; ++t) {
      const Scalar* h = hidden.data() + t * c;
      if (dead(t)) {
        std::copy(h, h + c, out.data() + t * c);
        continue;
      }
      if constexpr (std::is_same_v<Scalar, float>) {
        if (fp8_) {  // act_quant, FP8 GEMM, kv rounded to bf16
          std::copy_n(e.data() + t * m, m, xq.data());
          v41_quantize_activations(xq, config().quant_block);
          fp8_kv_.forward_reference(xq.data(), 1, kv.data());
          round_to_bf16(kv.data(), kv_out_);
        }
      }
      if (!fp8_)
        detail::reference_projection(w, e.data() + t * m, m, 0, kv_out_,
                                     static_cast<const Scalar*>(nullptr), kv.data());
      for (int64_t i = 0; i < hc_; ++i) {
        const Scalar alpha =
            reference::fused_gate(kv.data() + i * d_, h + i * d_, w.q_weight.data() + i * d_,
                                  w.k_weight.data() + i * d_, d_, config().rms_norm_eps);
        for (int64_t j = 0; j < d_; ++j)
          out[t * c + i * d_ + j] = h[i * d_ + j] + alpha * kv[hc_ * d_ + j];
      }
    }
  }

 private:
  static constexpr std::string_view kWho = "FusedEngramLayer";

  void check_args(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden,
                  std::span<Scalar> out, std::span<const uint8_t> live, int64_t tokens) const {
    detail::check_size(kWho, "hash_ids", hash_ids.size(), tokens, cols_, "[B, T, cols]");
    detail::check_size(kWho, "hidden", hidden.size(), tokens, hc_ * d_, "[B, T, hc, d]");
    detail::check_size(kWho, "out", out.size(), tokens, hc_ * d_, "[B, T, hc, d]");
    if (!live.empty()) detail::check_size(kWho, "live", live.size(), tokens, 1, "[B, T]");
  }

  void check_args_memory(std::span<const Scalar> hidden, std::span<Scalar> out,
                         std::span<const uint8_t> live, int64_t tokens) const {
    detail::check_size(kWho, "hidden", hidden.size(), tokens, hc_ * d_, "[B, T, hc, d]");
    detail::check_size(kWho, "out", out.size(), tokens, hc_ * d_, "[B, T, hc, d]");
    if (!live.empty()) detail::check_size(kWho, "live", live.size(), tokens, 1, "[B, T]");
  }

  void check_states(std::span<State* const> states, int64_t batch) const {
    ENGRAM_CHECK(static_cast<int64_t>(states.size()) == batch, kWho, ": ", states.size(),
                 " states for a batch of ", batch, " sequences");
    for (size_t s = 0; s < states.size(); ++s)
      ENGRAM_CHECK(states[s] != nullptr, kWho, ": state ", s, " is null");
  }

  /// x[i] = bf16(x[i]) (round to nearest even): the reference's FP8 GEMM returns bf16.
  static void round_to_bf16(float* x, int64_t n) noexcept {
    for (int64_t i = 0; i < n; ++i) x[i] = detail::bf16_bits_to_f32(detail::f32_to_bf16_bits(x[i]));
  }

  const Hasher& require_hasher() const {
    ENGRAM_CHECK(hasher_ != nullptr, kWho,
                 ": forward_tokens needs a hasher (load the layer with an NgramHasher)");
    return *hasher_;
  }

  // memory == nullptr: gather e from the table by hash_ids; else e = memory ([tokens, m], checked
  // by forward_memory) and hash_ids is unused.
  void run(std::span<const int64_t> hash_ids, std::span<const Scalar> hidden,
           const detail::Segments& segments, std::span<Scalar> out, std::span<const uint8_t> live,
           Workspace& ws, const Scalar* memory = nullptr) const {
    const int64_t tokens = segments.total();
    if (memory == nullptr) {
      check_args(hash_ids, hidden, out, live, tokens);
    } else {
      check_args_memory(hidden, out, live, tokens);
    }
    const uint8_t* mask = live.empty() ? nullptr : live.data();
    if (memory == nullptr)
      detail::check_hash_ids(kWho, weights_->table, hash_ids.data(), segments, mask);
    detail::check_finite_hidden(kWho, hidden.data(), segments, hc_, d_, mask);
    if (tokens == 0) return;

    const int64_t c = hc_ * d_, n = kv_out_, m = kv_in_;
    const int64_t* ids = hash_ids.data();
    if (mask != nullptr && memory == nullptr) {  // dead tokens read row 0 of each column
      int64_t* safe = ws.ids_.ensure(static_cast<size_t>(tokens * cols_));
      for (int64_t t = 0; t < tokens; ++t) {
        if (mask[t] == 0)
          std::fill_n(safe + t * cols_, cols_, int64_t{0});
        else
          std::copy_n(ids + t * cols_, cols_, safe + t * cols_);
      }
      ids = safe;
    }
    const Scalar* e = memory;
    Scalar* kv = ws.kv_.ensure(static_cast<size_t>(tokens * n));
    if (memory == nullptr) {
      Scalar* gathered = ws.memory_.ensure(static_cast<size_t>(tokens * m));
      detail::gather_memory(weights_->table, ids, tokens, gathered, ws.memory_f32_,
                            ws.gather_workspaces(detail::kernel_threads()));
      detail::check_finite_memory(kWho, weights_->table, gathered, ids, segments, mask);
      e = gathered;
    } else {
      detail::check_finite_external_memory(kWho, memory, segments, cols_, m / cols_, mask);
    }
    if constexpr (std::is_same_v<Scalar, float>) {
      if (fp8_) {  // act_quant (dead tokens' rows are quantised too, then ignored), FP8 GEMM, bf16
        float* xq = ws.memory_f32_.ensure(static_cast<size_t>(tokens * m));
        std::copy_n(e, tokens * m, xq);
        detail::parallel_for(tokens, 16, [&](int64_t begin, int64_t end, int) {
          v41_quantize_activations(
              std::span<float>(xq + begin * m, static_cast<size_t>((end - begin) * m)),
              config().quant_block);
        });
        fp8_kv_.forward(xq, tokens, kv);
        round_to_bf16(kv, tokens * n);
      }
    }
    if (!fp8_) kv_.forward(e, tokens, kv);

    const Scalar* h = hidden.data();
    Scalar* o = out.data();
    detail::parallel_for(tokens, 16, [&](int64_t begin, int64_t end, int) {
      for (int64_t t = begin; t < end; ++t) {
        if (mask != nullptr && mask[t] == 0) {
          if (o != h) std::copy_n(h + t * c, c, o + t * c);
          continue;
        }
        gate_.forward(kv + t * n, h + t * c, o + t * c);
      }
    });
  }

  std::shared_ptr<const Weights> weights_;
  std::shared_ptr<const Hasher> hasher_;
  int64_t d_ = 0;
  int64_t hc_ = 0;
  int64_t cols_ = 0;
  int64_t kv_out_ = 0;  ///< (hc + 1) * d
  int64_t kv_in_ = 0;   ///< memory_dim
  bool fp8_ = false;
  V41Projection fp8_kv_;
  AnyLinearT<Scalar> kv_;
  FusedGateT<Scalar> gate_;
};

using FusedEngramLayer = FusedEngramLayerT<float>;

}  // namespace engram
