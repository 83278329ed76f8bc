// engram/layer/blocks/demo_block.hpp: DemoBlock, the per-token step of DeepSeek's demo Engram
// module (engram_demo_v1) in EngramLayerT; the residual add is the caller's.
//
// With kv = [key_0 .. key_{hc-1}, value] the stacked projection of e (+ kv_bias), per token:
//   alpha_i = sigmoid(signed_sqrt(<RMSNorm1_i(key_i), RMSNorm2_i(h_i)> / sqrt(d)))  (gate.hpp)
//   y_i     = alpha_i * value                                                        [hc, d]
//   out     = y + ShortConv(y)   (branch RMSNorms, causal depthwise conv, SiLU; short_conv.hpp)
// A dead token's gates are shut (alpha = 0: y = 0, nothing enters the conv); its out is the conv
// of the earlier live tokens. A state keeps the conv's last (kernel_size - 1) * max_ngram_size
// normed rows. Fast path: chunks of tokens, each gated (bias, gate, y and the conv norms per token)
// then convolved while its rows are in cache, the same operations in the same order as two passes
// (a streaming sequence's earlier steps read from its state's ring; kv is only read).
// forward_reference is the PyTorch module step by step (separate key projections, double sums).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "engram/config.hpp"
#include "engram/detail/parallel.hpp"
#include "engram/error.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/blocks/block.hpp"
#include "engram/layer/checkpoint.hpp"
#include "engram/layer/decode_state.hpp"
#include "engram/layer/detail/kv_projection.hpp"
#include "engram/nn/detail/eigen_support.hpp"
#include "engram/nn/gate.hpp"
#include "engram/nn/rms_norm.hpp"
#include "engram/nn/short_conv.hpp"

namespace engram {

/// The demo module's block: context-aware gate over the hc branches + short causal conv.
struct DemoBlock {
  static constexpr std::string_view kName = "EngramLayer";
  static constexpr bool kHasHistory = true;
  /// Largest hc_mult supported (per-token gates live on the stack).
  static constexpr int64_t kMaxHcMult = 64;

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
      ENGRAM_CHECK(c.hc_mult <= kMaxHcMult, kName, ": hc_mult ", c.hc_mult,
                   " exceeds the supported maximum of ", kMaxHcMult);
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

    void forward(const BlockBatch<Scalar>& b) const noexcept {
      const int64_t c = hc_ * d_;
      // Chunks of tokens, each gated then convolved while its rows are in cache. A worker convolves
      // a token once every conv input it reads is gated: inputs before the worker's first token
      // belong to another worker, so those few tokens wait for the end of the parallel loop.
      const int64_t chunk =
          std::max<int64_t>(1, kChunkBytes / (static_cast<int64_t>(sizeof(Scalar)) * 4 * c));
      int64_t worker_begin[kMaxWorkers], worker_end[kMaxWorkers];
      const bool parallel = detail::kernel_threads() <= kMaxWorkers;
      std::fill_n(worker_begin, kMaxWorkers, int64_t{0});
      std::fill_n(worker_end, kMaxWorkers, int64_t{0});
      const auto body = [&](int64_t begin, int64_t end, int worker) {
        worker_begin[worker] = begin;
        worker_end[worker] = end;
        for (int64_t t0 = begin; t0 < end; t0 += chunk) {
          const int64_t t1 = std::min(end, t0 + chunk);
          gate_rows(b, t0, t1);
          for (int64_t t = t0; t < t1; ++t)
            if (first_input(b, t) >= begin) convolve(b, t);
        }
      };
      if (parallel)
        detail::parallel_for(b.tokens, 16, body);
      else
        body(0, b.tokens, 0);
      for (int64_t w = 0; w < kMaxWorkers; ++w) {
        const int64_t begin = worker_begin[w];
        for (int64_t t = begin; t < worker_end[w] && t < begin + conv_.history_rows(); ++t)
          if (first_input(b, t) < begin) convolve(b, t);
      }

      // Each state keeps the chunk's newest normed rows (history and rollback) in its ring.
      for (int64_t s = 0; s < static_cast<int64_t>(b.states.size()); ++s)
        detail::DecodeStateAccess::push_conv_rows(*b.states[s], b.scratch + b.segment_start[s] * c,
                                                  b.length(s));
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
    /// Workers whose ranges forward() records (more kernel threads: one worker).
    static constexpr int kMaxWorkers = 256;
    /// Bytes of a chunk's rows (kv, hidden, out, normed) kept in cache between gate and conv.
    static constexpr int64_t kChunkBytes = int64_t{256} << 10;

    /// Tokens [begin, end): bias, gate, y = alpha * value into out and the conv's normed inputs
    /// into scratch (a dead token: zeros). kv is read only: the biased keys, then the biased
    /// value, wait in the token's scratch row (out may be hidden, read by the gate).
    void gate_rows(const BlockBatch<Scalar>& b, int64_t begin, int64_t end) const noexcept {
      const int64_t c = hc_ * d_, n = (hc_ + 1) * d_;
      Scalar alpha[kMaxHcMult];
      for (int64_t t = begin; t < end; ++t) {
        Scalar* y = b.out + t * c;
        Scalar* normed = b.scratch + t * c;
        if (b.dead(t)) {  // gates shut: y = 0, a zero conv input
          std::fill_n(y, c, Scalar(0));
          std::fill_n(normed, c, Scalar(0));
          continue;
        }
        const Scalar* row = b.kv + t * n;
        detail::ArrayMap<Scalar>(normed, c) =
            detail::ConstArrayMap<Scalar>(row, c) + detail::ConstArrayMap<Scalar>(bias_.data(), c);
        gate_.forward(normed, b.hidden + t * c, alpha);
        // The value in the scratch row's last branch: normalize_scaled writes that branch last.
        Scalar* value = normed + (hc_ - 1) * d_;
        detail::ArrayMap<Scalar>(value, d_) = detail::ConstArrayMap<Scalar>(row + c, d_) +
                                              detail::ConstArrayMap<Scalar>(bias_.data() + c, d_);
        const detail::ConstArrayMap<Scalar> v(value, d_);
        for (int64_t i = 0; i < hc_; ++i) detail::ArrayMap<Scalar>(y + i * d_, d_) = alpha[i] * v;
        conv_.normalize_scaled(value, alpha, normed);
      }
    }

    /// The earliest token of this call whose normed row token t's conv reads (t itself when it
    /// reads none before it).
    int64_t first_input(const BlockBatch<Scalar>& b, int64_t t) const noexcept {
      const int64_t p = t - b.segment_start[b.token_segment[t]], dilation = conv_.dilation();
      return t - std::min(conv_.kernel_size() - 1, p / dilation) * dilation;
    }

    /// Conv over time for token t, added to out: step p of a sequence reads steps p - back of this
    /// call, or before it the sequence's history ring (whole sequences: zeros).
    void convolve(const BlockBatch<Scalar>& b, int64_t t) const noexcept {
      const int64_t c = hc_ * d_, k = conv_.kernel_size(), dilation = conv_.dilation();
      const Scalar* sources[ShortConvT<Scalar>::kMaxKernelSize];
      const int64_t s = b.token_segment[t], p = t - b.segment_start[s];
      const EngramDecodeStateT<Scalar>* state = b.states.empty() ? nullptr : b.states[s];
      for (int64_t tap = 0; tap < k; ++tap) {
        const int64_t q = p - (k - 1 - tap) * dilation;
        if (q >= 0)
          sources[tap] = b.scratch + (t - p + q) * c;
        else if (state != nullptr)
          sources[tap] = detail::DecodeStateAccess::conv_row(*state, state->position() + q);
        else
          sources[tap] = nullptr;
      }
      conv_.convolve_row(sources, b.out + t * c, /*accumulate=*/true);
    }

    int64_t d_ = 0;
    int64_t hc_ = 0;
    std::span<const Scalar> bias_;
    EngramGateT<Scalar> gate_;
    ShortConvT<Scalar> conv_;
  };
};

}  // namespace engram
