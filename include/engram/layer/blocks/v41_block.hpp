// engram/layer/blocks/v41_block.hpp: V41Block, the per-token step of DeepSeek-V4.1's released
// Engram layer (EngramFused.forward) in EngramLayerT: residual included, no conv.
//
// With kv = [key_0 .. key_{hc-1}, value] the stacked projection of e (no bias), per token and
// branch i:
//   out_i = h_i + sigmoid(g_i) * value, g_i the signed-sqrt RMS-normalised dot of
//           h_i * q_weight_i * k_weight_i and key_i (gate.hpp, FusedGateT)
// A dead token's gate is shut: out = hidden exactly. Tokens are independent given their hash ids,
// so states only advance (position, and the hash history with token ids). The weights may hold
// an FP8 wkv (as released; detail/kv_projection.hpp); table rows are FP8 E4M3 with E8M0 scales.
// forward_reference is EngramFused.forward step by step (plain loops).
#pragma once

#include <algorithm>
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
#include "engram/nn/gate.hpp"

namespace engram {

/// DeepSeek-V4.1's block: the fused gate with the residual, no conv.
struct V41Block {
  static constexpr std::string_view kName = "V41EngramLayer";
  static constexpr bool kHasHistory = false;
  /// The layer checks the hidden states before the step (the step reads each twice otherwise).
  static constexpr bool kChecksHidden = false;

  template <class Scalar>
  using Weights = FusedEngramWeightsT<Scalar>;
  template <class Scalar>
  static constexpr auto* load_weights = &load_fused_engram_weights<Scalar>;

  template <class Scalar>
  class Step {
   public:
    Step() = default;
    explicit Step(const Weights<Scalar>& w)
        : d_(w.config.hidden_size),
          hc_(w.config.hc_mult),
          gate_(d_, hc_, w.q_weight, w.k_weight, w.config.rms_norm_eps) {}

    int64_t history_rows() const noexcept { return 0; }
    const FusedGateT<Scalar>& gate() const noexcept { return gate_; }

    /// Scratch values forward() needs: none.
    int64_t scratch_size(int64_t) const noexcept { return 0; }

    /// out = hidden + the gated value per token; states advance. Returns -1 (the layer checked
    /// the hidden states before).
    int64_t forward(const BlockBatch<Scalar>& b) const noexcept {
      const int64_t c = hc_ * d_, n = (hc_ + 1) * d_;
      const Scalar* h = b.hidden;
      Scalar* o = b.out;
      detail::parallel_for(b.tokens, 16, [&](int64_t begin, int64_t end, int) {
        for (int64_t t = begin; t < end; ++t) {
          if (b.dead(t)) {
            if (o != h) std::copy_n(h + t * c, c, o + t * c);
            continue;
          }
          gate_.forward(b.kv + t * n, h + t * c, o + t * c);
        }
      });
      for (int64_t s = 0; s < static_cast<int64_t>(b.states.size()); ++s)
        detail::DecodeStateAccess::advance(*b.states[s], b.length(s));
      return -1;
    }

    /// The readable spec over whole sequences: e [B * T, m] the reference gather, live null (all
    /// live) or [B * T].
    void forward_reference(const Weights<Scalar>& w, const detail::KvProjection<Scalar>& kv,
                           const Scalar* e, const Scalar* hidden, int64_t batch, int64_t seq_len,
                           const uint8_t* live, Scalar* out) const {
      const int64_t tokens = batch * seq_len, c = hc_ * d_, m = kv.in_features();
      std::vector<Scalar> row(static_cast<size_t>(kv.out_features()));
      for (int64_t t = 0; t < tokens; ++t) {
        const Scalar* h = hidden + t * c;
        if (live != nullptr && live[t] == 0) {
          std::copy(h, h + c, out + t * c);
          continue;
        }
        kv.forward_reference(w, e + t * m, 0, kv.out_features(), nullptr, row.data());
        for (int64_t i = 0; i < hc_; ++i) {
          const Scalar alpha =
              reference::fused_gate(row.data() + i * d_, h + i * d_, w.q_weight.data() + i * d_,
                                    w.k_weight.data() + i * d_, d_, w.config.rms_norm_eps);
          for (int64_t j = 0; j < d_; ++j)
            out[t * c + i * d_ + j] = h[i * d_ + j] + alpha * row[hc_ * d_ + j];
        }
      }
    }

   private:
    int64_t d_ = 0;
    int64_t hc_ = 0;
    FusedGateT<Scalar> gate_;
  };
};

}  // namespace engram
