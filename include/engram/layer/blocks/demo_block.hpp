// engram/layer/blocks/demo_block.hpp: DemoBlock, the per-token step of DeepSeek's demo Engram
// module (engram_demo_v1) in EngramLayerT; the residual add is the caller's.
//
// With kv = [key_0 .. key_{hc-1}, value] the stacked projection of e (+ kv_bias), per token:
//   alpha_i = sigmoid(signed_sqrt(<RMSNorm1_i(key_i), RMSNorm2_i(h_i)> / sqrt(d)))  (gate.hpp)
//   y_i     = alpha_i * value                                                        [hc, d]
//   out     = y + ShortConv(y)   (branch RMSNorms, causal depthwise conv, SiLU; short_conv.hpp)
// A dead token's gates are shut (alpha = 0: y = 0, nothing enters the conv); its out is the conv
// of the earlier live tokens. A state keeps the conv's last (kernel_size - 1) * max_ngram_size
// normed rows. Fast path, two passes over the call's tokens: pass 1 gates each live token (keys +
// bias against its hidden state, one pass per branch) and checks that hidden state on the way (a
// non-finite one stops the call before anything is written); pass 2 makes each token's value, conv
// input (into a small per-thread ring) and output row, written once. A streaming sequence's earlier
// steps come from its state's ring; kv is only read.
// forward_reference is the PyTorch module step by step (separate key projections, double sums).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "engram/config.hpp"
#include "engram/detail/parallel.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/blocks/block.hpp"
#include "engram/layer/checkpoint.hpp"
#include "engram/layer/decode_state.hpp"
#include "engram/layer/detail/kv_projection.hpp"
#include "engram/layer/detail/layer_common.hpp"
#include "engram/nn/detail/eigen_support.hpp"
#include "engram/nn/gate.hpp"
#include "engram/nn/rms_norm.hpp"
#include "engram/nn/short_conv.hpp"

namespace engram {

/// The demo module's block: context-aware gate over the hc branches + short causal conv.
struct DemoBlock {
  static constexpr std::string_view kName = "EngramLayer";
  static constexpr bool kHasHistory = true;
  /// Step::forward checks the live tokens' hidden states (the gate's sums of squares).
  static constexpr bool kChecksHidden = true;

  template <class Scalar>
  using Weights = EngramWeightsT<Scalar>;
  template <class Scalar>
  static constexpr auto* load_weights = &load_engram_weights<Scalar>;

  template <class Scalar>
  class Step {
   public:
    Step() = default;
    explicit Step(const Weights<Scalar>& w) {
      const EngramConfig& c = w.config;
      d_ = c.hidden_size;
      hc_ = c.hc_mult;
      bias_ = w.kv_bias;
      gate_ = EngramGateT<Scalar>(d_, hc_, w.key_norm, w.query_norm, kGateNormEps);
      conv_ = ShortConvT<Scalar>(d_, hc_, c.kernel_size, c.max_ngram_size, w.conv_weight,
                                 w.conv_norm, kConvNormEps);
    }

    int64_t history_rows() const noexcept { return conv_.history_rows(); }
    const EngramGateT<Scalar>& gate() const noexcept { return gate_; }
    const ShortConvT<Scalar>& short_conv() const noexcept { return conv_; }

    /// Scratch values forward() needs for `tokens` tokens (BlockBatch::scratch): the gates
    /// [tokens, hc], then per kernel thread a ring of history_rows() + 1 normed rows and a value
    /// row.
    int64_t scratch_size(int64_t tokens) const noexcept {
      return tokens * hc_ + detail::kernel_threads() * worker_scratch();
    }

    /// The step over a call (see the banner). Pass 1 gates every live token (keys + bias against
    /// hidden, in one pass per branch) and checks its hidden state on the way; pass 2 forms each
    /// token's value, conv input and output row. Returns -1, or a live token whose hidden state
    /// is not finite: then nothing is written (out, states) and the caller reports the error.
    [[nodiscard]] int64_t forward(const BlockBatch<Scalar>& b) const noexcept {
      const int64_t c = hc_ * d_, n = (hc_ + 1) * d_;
      Scalar* alpha = b.scratch;
      std::atomic<int64_t> bad{b.tokens};
      detail::parallel_for(b.tokens, 16, [&](int64_t begin, int64_t end, int) {
        for (int64_t t = begin; t < end; ++t) {
          Scalar* a = alpha + t * hc_;
          if (b.dead(t)) {  // gates shut
            std::fill_n(a, hc_, Scalar(0));
            continue;
          }
          const Scalar* h = b.hidden + t * c;
          if (!gate_.forward(b.kv + t * n, bias_.data(), h, a) &&
              !detail::finite::all_finite(h, c)) {
            detail::finite::keep_lowest(bad, t);
            return;
          }
        }
      });
      if (bad.load() < b.tokens) return bad.load();

      detail::parallel_for(b.tokens, 16, [&](int64_t begin, int64_t end, int worker) {
        convolve_range(b, begin, end, b.scratch + b.tokens * hc_ + worker * worker_scratch());
      });

      // Each state keeps the newest normed rows of its chunk (history and rollback) in its ring.
      Scalar* value = b.scratch + b.tokens * hc_ + (conv_.history_rows() + 1) * c;
      for (int64_t s = 0; s < static_cast<int64_t>(b.states.size()); ++s) {
        const int64_t first = b.segment_start[s];
        detail::DecodeStateAccess::push_conv_rows_with(
            *b.states[s], b.length(s),
            [&](int64_t p, Scalar* dst) { (void)normed_row(b, first + p, value, dst); });
      }
      return -1;
    }

    /// The readable spec over whole sequences: e [B * T, m] the reference gather, live null (all
    /// live) or [B * T].
    void forward_reference(const Weights<Scalar>& w, const detail::KvProjection<Scalar>& kv,
                           const Scalar* e, const Scalar* hidden, int64_t batch, int64_t seq_len,
                           const uint8_t* live, Scalar* out) const {
      const int64_t tokens = batch * seq_len, c = hc_ * d_, m = kv.in_features();
      std::vector<Scalar> key(static_cast<size_t>(d_)), value(static_cast<size_t>(d_));
      std::vector<Scalar> y(static_cast<size_t>(tokens * c)), conv(static_cast<size_t>(tokens * c));
      for (int64_t t = 0; t < tokens; ++t) {
        if (live != nullptr && live[t] == 0) continue;  // gates shut: y = 0
        const Scalar* et = e + t * m;
        kv.forward_reference(w, et, hc_ * d_, d_, w.kv_bias.data() + hc_ * d_, value.data());
        for (int64_t i = 0; i < hc_; ++i) {
          kv.forward_reference(w, et, i * d_, d_, w.kv_bias.data() + i * d_, key.data());
          const Scalar alpha = reference::engram_gate(
              key.data(), hidden + t * c + i * d_, w.key_norm.data() + i * d_,
              w.query_norm.data() + i * d_, d_, kGateNormEps);
          for (int64_t j = 0; j < d_; ++j) y[t * c + i * d_ + j] = alpha * value[j];
        }
      }
      for (int64_t b = 0; b < batch; ++b)
        reference::short_conv(y.data() + b * seq_len * c, seq_len, hc_, d_, w.config.kernel_size,
                              w.config.max_ngram_size, w.conv_weight.data(), w.conv_norm.data(),
                              conv.data() + b * seq_len * c, kConvNormEps);
      for (int64_t i = 0; i < tokens * c; ++i) out[i] = y[i] + conv[i];
    }

   private:
    /// Scratch values of one worker of pass 2: a ring of history_rows() + 1 normed rows [hc, d],
    /// then a value row [d].
    int64_t worker_scratch() const noexcept { return (conv_.history_rows() + 1) * hc_ * d_ + d_; }

    /// Token t's conv input (normed [hc, d]) into dst: the branch norms of alpha_i * value, value
    /// = kv's value row + bias (left in `value`, [d]); a dead token: zeros. Returns the value, or
    /// null for a dead token.
    const Scalar* normed_row(const BlockBatch<Scalar>& b, int64_t t, Scalar* value,
                             Scalar* dst) const noexcept {
      const int64_t c = hc_ * d_, n = (hc_ + 1) * d_;
      if (b.dead(t)) {
        std::fill_n(dst, c, Scalar(0));
        return nullptr;
      }
      detail::ArrayMap<Scalar>(value, d_) = detail::ConstArrayMap<Scalar>(b.kv + t * n + c, d_) +
                                            detail::ConstArrayMap<Scalar>(bias_.data() + c, d_);
      conv_.normalize_scaled(value, b.scratch + t * hc_, dst);
      return value;
    }

    /// Pass 2 over tokens [begin, end) with a worker's scratch: the ring holds token u's normed
    /// row in slot u mod (history_rows() + 1), starting with the rows before `begin` that the
    /// range's first conv reads (made again here: another worker made them too); earlier steps of
    /// a streaming sequence come from its state's ring, steps before a sequence's start are zero.
    void convolve_range(const BlockBatch<Scalar>& b, int64_t begin, int64_t end,
                        Scalar* scratch) const noexcept {
      const int64_t c = hc_ * d_, k = conv_.kernel_size(), dilation = conv_.dilation();
      const int64_t ring_rows = conv_.history_rows() + 1;
      Scalar* value = scratch + ring_rows * c;
      const auto slot = [&](int64_t u) { return scratch + u % ring_rows * c; };
      const int64_t start = b.segment_start[b.token_segment[begin]];
      for (int64_t u = std::max(start, begin - conv_.history_rows()); u < begin; ++u)
        (void)normed_row(b, u, value, slot(u));
      const Scalar* sources[ShortConvT<Scalar>::kMaxKernelSize];
      for (int64_t t = begin; t < end; ++t) {
        const Scalar* v = normed_row(b, t, value, slot(t));
        const int64_t s = b.token_segment[t], p = t - b.segment_start[s];
        const EngramDecodeStateT<Scalar>* state = b.states.empty() ? nullptr : b.states[s];
        for (int64_t tap = 0; tap < k; ++tap) {
          const int64_t q = p - (k - 1 - tap) * dilation;
          if (q >= 0)
            sources[tap] = slot(t - p + q);
          else if (state != nullptr)
            sources[tap] = detail::DecodeStateAccess::conv_row(*state, state->position() + q);
          else
            sources[tap] = nullptr;
        }
        conv_.convolve_row_gated(sources, v, v != nullptr ? b.scratch + t * hc_ : nullptr,
                                 b.out + t * c);
      }
    }

    int64_t d_ = 0;
    int64_t hc_ = 0;
    std::span<const Scalar> bias_;
    EngramGateT<Scalar> gate_;
    ShortConvT<Scalar> conv_;
  };
};

}  // namespace engram
