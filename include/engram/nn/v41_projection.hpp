// engram/nn/v41_projection.hpp: the FP8 projection of DeepSeek-V4.1's Engram layer (wkv), one name.
//
// V41Projection computes y[t, o] = sum_i x[t, i] * e4m3(codes[o, i]) * 2^(scales[o/32, i/32] - 127)
// (f32 sums; codes [out, in], scales [ceil(out/32), ceil(in/32)]), and v41_quantize_activations is
// the reference's act_quant in place (per block of 32: amax = max(max|x|, 1e-4),
// s = 2^ceil(log2(amax / 448)), x = e4m3_rne(x / s) * s). Both are nn/fp8_linear.hpp's
// (Fp8BlockLinear with run-time ISA kernels, quantize_activations_e4m3); this header is the one
// place the V4.1 layer names them. Thread safety: const methods are reentrant.
#pragma once

#include <cstdint>
#include <span>

#include "engram/nn/fp8_linear.hpp"

namespace engram {

using V41Projection = Fp8BlockLinear;

/// The reference's activation quantisation in front of the FP8 GEMM, in place.
inline void v41_quantize_activations(std::span<float> x, std::int64_t block = 32) noexcept {
  quantize_activations_e4m3(x, block);
}

}  // namespace engram
