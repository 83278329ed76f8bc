// engram/layer/detail/kv_projection.hpp: the stacked keys + value projection of every Engram block,
// kv [tokens, (hc + 1) * d] = e [tokens, m] W^T, m = memory_dim, and its scalar reference.
//
// W is the weights' kv_weight (Scalar), kv_weight_bf16 (CheckpointOptions::bf16_projection /
// bf16_compute) or, for weights that have them, the FP8 wkv_fp8 codes with their 32 x 32 E8M0
// scales (DeepSeek-V4.1 as released: e is first quantised as the reference's act_quant, products
// sum in f32, kv is rounded to bf16; float layers only). No bias is added here: a block adds its
// own (DemoBlock's kv_bias) in its per-token pass. Immutable after construction; const methods are
// thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "engram/error.hpp"
#include "engram/nn/any_linear.hpp"
#include "engram/nn/detail/eigen_support.hpp"
#include "engram/nn/linear.hpp"
#include "engram/nn/v41_projection.hpp"

namespace engram::detail {

/// The layer's stacked keys + value projection [(hc + 1) * d, in] over its weights' kv_weight, or
/// kv_weight_bf16 when loaded with CheckpointOptions::bf16_projection (native bf16 compute with
/// bf16_compute).
template <class Scalar, class Weights>
AnyLinearT<Scalar> stacked_projection(const Weights& w, int64_t in, std::span<const Scalar> bias) {
  const int64_t out = (w.config.hc_mult + 1) * w.config.hidden_size;
  if constexpr (std::is_same_v<Scalar, float>) {
    if (!w.kv_weight_bf16.empty())
      return AnyLinearT<Scalar>(
          LinearT<float, BFloat16>(w.kv_weight_bf16, out, in, bias,
                                   w.bf16_compute ? Bf16Compute::kNative : Bf16Compute::kExact));
  }
  return AnyLinearT<Scalar>(LinearT<Scalar>(w.kv_weight, out, in, bias));
}

/// reference::linear of x [in] against rows [first, first + count) of the stacked projection
/// (kv_weight or kv_weight_bf16; with bf16_compute where the projection runs natively, x rounded
/// to bf16 as the kernel does) into y [count]; bias may be null.
template <class Scalar, class Weights>
void reference_projection(const Weights& w, const Scalar* x, int64_t in, int64_t first,
                          int64_t count, const Scalar* bias, Scalar* y) {
  if constexpr (std::is_same_v<Scalar, float>) {
    if (w.bf16_compute && !w.kv_weight_bf16.empty() && active_isa() >= Isa::kAvx512Bf16)
      return reference::linear_bf16_native(x, w.kv_weight_bf16.data() + first * in, bias, y, 1, in,
                                           count);
  }
  if (!w.kv_weight_bf16.empty())
    reference::linear(x, w.kv_weight_bf16.data() + first * in, bias, y, 1, in, count);
  else
    reference::linear(x, w.kv_weight.data() + first * in, bias, y, 1, in, count);
}

/// x[i] = bf16(x[i]) (round to nearest even): the reference's FP8 GEMM returns bf16.
inline void round_to_bf16(float* x, int64_t n) noexcept {
  for (int64_t i = 0; i < n; ++i) x[i] = bf16_bits_to_f32(f32_to_bf16_bits(x[i]));
}

/// The stacked projection of a layer: dense (AnyLinearT) or FP8 (V41Projection).
template <class Scalar>
class KvProjection {
 public:
  KvProjection() = default;
  /// Over w's weights; their kv_bias, where they have one, is kept for dense().bias() (forward
  /// never adds it).
  template <class Weights>
  KvProjection(std::string_view who, const Weights& w)
      : out_((w.config.hc_mult + 1) * w.config.hidden_size),
        in_(w.config.memory_dim()),
        quant_block_(w.config.quant_block) {
    if constexpr (requires { w.wkv_fp8; }) {
      if (!w.wkv_fp8.empty()) {
        ENGRAM_CHECK((std::is_same_v<Scalar, float>), who, ": an FP8 wkv needs a float layer");
        fp8_ = V41Projection(w.wkv_fp8, w.wkv_fp8_scale, out_, in_);
        is_fp8_ = true;
        return;
      }
    }
    std::span<const Scalar> bias;
    if constexpr (requires { w.kv_bias; }) bias = w.kv_bias;
    dense_ = stacked_projection<Scalar>(w, in_, bias);
  }

  int64_t in_features() const noexcept { return in_; }
  int64_t out_features() const noexcept { return out_; }
  bool is_fp8() const noexcept { return is_fp8_; }
  const AnyLinearT<Scalar>& dense() const noexcept { return dense_; }
  const V41Projection& fp8() const noexcept { return fp8_; }

  /// kv [tokens, out] of e [tokens, in] (no bias); `scratch` holds the quantised e (FP8 only).
  void forward(const Scalar* e, int64_t tokens, Scalar* kv, AlignedBuffer<float>& scratch) const {
    if constexpr (std::is_same_v<Scalar, float>) {
      if (is_fp8_) {  // act_quant (dead tokens' rows are quantised too, then ignored), FP8 GEMM
        const int64_t m = in_;
        float* xq = scratch.ensure(static_cast<size_t>(tokens * m));
        std::copy_n(e, tokens * m, xq);
        parallel_for(tokens, 16, [&](int64_t begin, int64_t end, int) {
          v41_quantize_activations(
              std::span<float>(xq + begin * m, static_cast<size_t>((end - begin) * m)),
              quant_block_);
        });
        fp8_.forward(xq, tokens, kv);
        round_to_bf16(kv, tokens * out_);
        return;
      }
    }
    (void)scratch;
    dense_.forward(e, tokens, kv, /*add_bias=*/false);
  }

  /// The scalar reference of rows [first, first + count) of one token's kv from x [in], plus bias
  /// (may be null). FP8: the whole row only (first 0, count out, no bias).
  template <class Weights>
  void forward_reference(const Weights& w, const Scalar* x, int64_t first, int64_t count,
                         const Scalar* bias, Scalar* y) const {
    if constexpr (std::is_same_v<Scalar, float>) {
      if (is_fp8_) {  // act_quant, FP8 GEMM, kv rounded to bf16
        std::vector<float> xq(x, x + in_);
        v41_quantize_activations(xq, quant_block_);
        fp8_.forward_reference(xq.data(), 1, y);
        round_to_bf16(y, out_);
        (void)first, (void)count, (void)bias;
        return;
      }
    }
    reference_projection(w, x, in_, first, count, bias, y);
  }

 private:
  int64_t out_ = 0;
  int64_t in_ = 0;
  int64_t quant_block_ = 32;
  bool is_fp8_ = false;
  AnyLinearT<Scalar> dense_;
  V41Projection fp8_;
};

}  // namespace engram::detail
