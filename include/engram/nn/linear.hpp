// engram/nn/linear.hpp: affine projection y = x W^T + b, as torch.nn.Linear.
//
//   x [rows, in], W [out, in] row-major (PyTorch layout), b [out] or none, y [rows, out]
//
// Weight storage (the `Weight` template parameter): Scalar, or BFloat16 with Scalar = float (half
// the bytes; products accumulate in f32, each weight widened exactly; the result equals the f32
// LinearT on the bf16-rounded weights up to summation order). Bias, x and y are always Scalar.
//
// Kernels (chosen per call by `rows`; all use detail::kernel_threads() threads):
//   rows <= kSkinnyRows (decode, short chunks), float, AVX-512 builds: detail::skinny_product, a
//     register-blocked dot-product kernel streaming each W row once (4 W rows x up to 6 x rows per
//     block), the output rows of W split over the threads.
//   otherwise: one GEMM, OpenBLAS sgemm/dgemm when built with engram::blas (ENGRAM_HAVE_BLAS;
//     OpenBLAS set to one thread, called by each kernel thread on its block of W rows), else
//     Eigen's product (row-major operands, no transposed copy of W; Eigen::nbThreads() threads with
//     OpenMP). BFloat16 weights: panels of kPanelRows W rows are widened into a per-thread f32
//     buffer (grow-only, thread_local) and multiplied panel by panel.
// The Engram layer stacks its hc key projections and the value projection into one LinearT of
// [(hc + 1) * d, memory_dim] so the whole projection is one GEMM.
// Ownership: LinearT views its weight and bias (borrowed; they must outlive it).
// Thread safety: forward is const and safe to call concurrently on distinct outputs (the BLAS
// thread count is process-wide in OpenBLAS).
// Not guaranteed: bitwise equality between kernels, thread counts or builds (summation order
// differs; all match reference::linear to float rounding). Eigen and OpenBLAS may allocate their
// GEMM blocking buffers per call (large shapes); the skinny kernel does not allocate.
//
// Example: engram::LinearT<float, engram::BFloat16> proj(bf16_weight, out, in, f32_bias);
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <type_traits>

#ifdef ENGRAM_HAVE_BLAS
#include <cblas.h>
#endif

#include "engram/detail/float16.hpp"
#include "engram/error.hpp"
#include "engram/nn/detail/eigen_support.hpp"

namespace engram {

namespace detail {

/// A weight element widened to float (exact for bf16).
inline float widen(float w) noexcept { return w; }
inline double widen(double w) noexcept { return w; }
inline float widen(BFloat16 w) noexcept { return bf16_bits_to_f32(w.bits); }

#if ENGRAM_HAVE_AVX512
inline __m512 load16(const float* p) noexcept { return _mm512_loadu_ps(p); }
inline __m512 load16(const float* p, __mmask16 m) noexcept { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16(const BFloat16* p) noexcept {
  return bf16x16_to_f32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 load16(const BFloat16* p, __mmask16 m) noexcept {
  return bf16x16_to_f32(_mm256_maskz_loadu_epi16(m, p));
}

// Sum of the 16 lanes. The masked shuffles take `v` as their merge source: GCC 12's unmasked
// forms (and _mm512_reduce_add_ps) trip -Wuninitialized on _mm512_undefined (GCC bug 105593).
inline float lane_sum(__m512 v) noexcept {
  constexpr __mmask16 kAll = 0xFFFF;
  v = _mm512_add_ps(v, _mm512_mask_shuffle_f32x4(v, kAll, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_mask_shuffle_f32x4(v, kAll, v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = _mm512_add_ps(v, _mm512_mask_permute_ps(v, kAll, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_mask_permute_ps(v, kAll, v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(v);
}

// XR x rows against 4 (or WR) W rows: acc[w][r] += W[w, k:k+16] * x[r, k:k+16], then one
// horizontal sum per (w, r). K tail by masked loads.
template <int WR, int XR, class W>
inline void skinny_block(const float* x, int64_t ldx, const W* w, int64_t in, float* y,
                         int64_t ldy) noexcept {
  __m512 acc[WR][XR];
  for (int i = 0; i < WR; ++i)
    for (int r = 0; r < XR; ++r) acc[i][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= in; k += 16) {
    __m512 wv[WR];
    for (int i = 0; i < WR; ++i) wv[i] = load16(w + i * in + k);
    for (int r = 0; r < XR; ++r) {
      const __m512 xv = _mm512_loadu_ps(x + r * ldx + k);
      for (int i = 0; i < WR; ++i) acc[i][r] = _mm512_fmadd_ps(wv[i], xv, acc[i][r]);
    }
  }
  if (k < in) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (in - k)) - 1u);
    __m512 wv[WR];
    for (int i = 0; i < WR; ++i) wv[i] = load16(w + i * in + k, mask);
    for (int r = 0; r < XR; ++r) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + r * ldx + k);
      for (int i = 0; i < WR; ++i) acc[i][r] = _mm512_fmadd_ps(wv[i], xv, acc[i][r]);
    }
  }
  for (int r = 0; r < XR; ++r)
    for (int i = 0; i < WR; ++i) y[r * ldy + i] = lane_sum(acc[i][r]);
}

template <int WR, class W>
inline void skinny_rows(const float* x, int64_t rows, const W* w, int64_t in, float* y,
                        int64_t ldy) noexcept {
  // Near-equal blocks of at most 6 rows (32 rows: 6 6 5 5 5 5, not 6 x 5 + 2): a small tail
  // block reloads the W rows for few FMAs.
  const int64_t blocks = (rows + 5) / 6;
  for (int64_t b = 0, r = 0; b < blocks; ++b) {
    const int64_t count = (rows - r) / (blocks - b);
    const float* xb = x + r * in;
    float* yb = y + r * ldy;
    switch (count) {
      case 6:
        skinny_block<WR, 6>(xb, in, w, in, yb, ldy);
        break;
      case 5:
        skinny_block<WR, 5>(xb, in, w, in, yb, ldy);
        break;
      case 4:
        skinny_block<WR, 4>(xb, in, w, in, yb, ldy);
        break;
      case 3:
        skinny_block<WR, 3>(xb, in, w, in, yb, ldy);
        break;
      case 2:
        skinny_block<WR, 2>(xb, in, w, in, yb, ldy);
        break;
      default:
        skinny_block<WR, 1>(xb, in, w, in, yb, ldy);
        break;
    }
    r += count;
  }
}
#endif

/// Whether skinny_product has a vector kernel for Scalar in this build.
template <class Scalar>
inline constexpr bool kHasSkinnyKernel =
#if ENGRAM_HAVE_AVX512
    std::is_same_v<Scalar, float>;
#else
    false;
#endif

/// y[r, o] = <x[r, :], W[o, :]> for r in [0, rows), o in [o_begin, o_end): x [rows, in],
/// W [out, in] (Scalar or BFloat16), y [rows, ldy]. The AVX-512 kernel when
/// kHasSkinnyKernel<Scalar>, else plain loops (skinny_product_reference).
template <class Scalar, class W>
void skinny_product_reference(const Scalar* x, int64_t rows, const W* w, int64_t in, Scalar* y,
                              int64_t ldy, int64_t o_begin, int64_t o_end) noexcept {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = o_begin; o < o_end; ++o) {
      Scalar acc = 0;
      for (int64_t i = 0; i < in; ++i) acc += x[r * in + i] * Scalar(widen(w[o * in + i]));
      y[r * ldy + o] = acc;
    }
}

template <class Scalar, class W>
void skinny_product(const Scalar* x, int64_t rows, const W* w, int64_t in, Scalar* y, int64_t ldy,
                    int64_t o_begin, int64_t o_end) noexcept {
#if ENGRAM_HAVE_AVX512
  if constexpr (std::is_same_v<Scalar, float>) {
    int64_t o = o_begin;
    for (; o + 4 <= o_end; o += 4) skinny_rows<4>(x, rows, w + o * in, in, y + o, ldy);
    for (; o < o_end; ++o) skinny_rows<1>(x, rows, w + o * in, in, y + o, ldy);
    return;
  }
#endif
  skinny_product_reference(x, rows, w, in, y, ldy, o_begin, o_end);
}

}  // namespace detail

/// A borrowed [out, in] weight and optional [out] bias.
/// @tparam Scalar float or double (inputs, outputs, bias, accumulation).
/// @tparam Weight weight storage: Scalar, or BFloat16 when Scalar is float.
template <class Scalar = float, class Weight = Scalar>
class LinearT {
  static_assert(std::is_same_v<Weight, Scalar> ||
                    (std::is_same_v<Weight, BFloat16> && std::is_same_v<Scalar, float>),
                "LinearT: Weight must be Scalar, or BFloat16 with Scalar = float");

 public:
  /// W rows widened per panel by the BFloat16 GEMM path.
  static constexpr int64_t kPanelRows = 256;

  LinearT() = default;
  /// @param weight out_features * in_features values, row-major. @param bias empty or out_features.
  LinearT(std::span<const Weight> weight, int64_t out_features, int64_t in_features,
          std::span<const Scalar> bias = {})
      : weight_(weight), bias_(bias), out_(out_features), in_(in_features) {
    ENGRAM_CHECK(out_features > 0 && in_features > 0, "Linear: sizes must be positive, found [",
                 out_features, ", ", in_features, "]");
    ENGRAM_CHECK(static_cast<int64_t>(weight.size()) == out_features * in_features,
                 "Linear: weight has ", weight.size(), " values, expected [", out_features, ", ",
                 in_features, "]");
    ENGRAM_CHECK(bias.empty() || static_cast<int64_t>(bias.size()) == out_features,
                 "Linear: bias has ", bias.size(), " values, expected ", out_features);
  }

  /// Calls with at most this many rows use the skinny kernel (where it exists), larger ones a GEMM.
  static constexpr int64_t kSkinnyRows = 48;

  int64_t in_features() const noexcept { return in_; }
  int64_t out_features() const noexcept { return out_; }
  std::span<const Weight> weight() const noexcept { return weight_; }
  std::span<const Scalar> bias() const noexcept { return bias_; }

  /// y = x W^T (+ b when `add_bias` and a bias exists). x [rows, in], y [rows, out]; no aliasing.
  void forward(const Scalar* x, int64_t rows, Scalar* y, bool add_bias = true) const {
    if (rows <= 0) return;
    detail::RowMatrixMap<Scalar> ym(y, rows, out_);
    if (detail::kHasSkinnyKernel<Scalar> && rows <= kSkinnyRows) {
      // Split W's rows over the threads in blocks of 16 (whole 4-row kernel blocks).
      const Weight* w = weight_.data();
      const int64_t blocks = (out_ + 15) / 16;
      detail::parallel_for(blocks, 8, [&](int64_t begin, int64_t end, int) {
        detail::skinny_product(x, rows, w, in_, y, out_, begin * 16, std::min(out_, end * 16));
      });
    } else if constexpr (std::is_same_v<Weight, Scalar>) {
      gemm(x, rows, weight_.data(), out_, y);
    } else {
      thread_local detail::AlignedBuffer<Scalar> panel;
      Scalar* wide = panel.ensure(static_cast<size_t>(std::min(kPanelRows, out_) * in_));
      for (int64_t o = 0; o < out_; o += kPanelRows) {
        const int64_t count = std::min(kPanelRows, out_ - o);
        detail::bf16_to_f32(weight_.data() + o * in_, wide, count * in_);
        gemm(x, rows, wide, count, y + o);
      }
    }
    if (add_bias && !bias_.empty()) {
      const Eigen::Map<const Eigen::Matrix<Scalar, 1, Eigen::Dynamic>> b(bias_.data(), out_);
      ym.rowwise() += b;
    }
  }

 private:
  // y[:, 0:n] = x w^T for w [n, in] row-major; y's rows are out_ apart. OpenBLAS with
  // engram::blas, else Eigen.
  void gemm(const Scalar* x, int64_t rows, const Scalar* w, int64_t n, Scalar* y) const {
#ifdef ENGRAM_HAVE_BLAS
    if constexpr (std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>) {
      // OpenBLAS runs single-threaded inside our own threads (each takes a block of output
      // columns): its pthread pool beside OpenMP's would have two sets of spinning threads
      // competing for the same cores.
      if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
      const auto m = static_cast<blasint>(rows), k = static_cast<blasint>(in_),
                 ldy = static_cast<blasint>(out_);
      constexpr int64_t kBlock = 16;  // columns per work unit (whole cache lines of y)
      detail::parallel_for((n + kBlock - 1) / kBlock, 8, [&](int64_t begin, int64_t end, int) {
        const int64_t c0 = begin * kBlock, c1 = std::min(n, end * kBlock);
        const auto cols = static_cast<blasint>(c1 - c0);
        if constexpr (std::is_same_v<Scalar, float>)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, cols, k, 1.0f, x, k, w + c0 * k,
                      k, 0.0f, y + c0, ldy);
        else
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, cols, k, 1.0, x, k, w + c0 * k, k,
                      0.0, y + c0, ldy);
      });
      return;
    }
#endif
    const detail::ConstRowMatrixMap<Scalar> wm(w, n, in_);
    const detail::ConstRowMatrixMap<Scalar> xm(x, rows, in_);
    Eigen::Map<detail::RowMatrix<Scalar>, 0, Eigen::OuterStride<>> ym(y, rows, n,
                                                                      Eigen::OuterStride<>(out_));
    ym.noalias() = xm * wm.transpose();
  }

  std::span<const Weight> weight_;
  std::span<const Scalar> bias_;
  int64_t out_ = 0;
  int64_t in_ = 0;
};

using Linear = LinearT<float>;
/// bf16 weights, f32 everything else.
using LinearBF16 = LinearT<float, BFloat16>;

namespace reference {

/// Plain-loop y = x W^T + b (the spec of LinearT::forward); sums in double. bias may be null.
/// Weight is Scalar or BFloat16 (widened exactly).
template <class Scalar, class Weight>
void linear(const Scalar* x, const Weight* weight, const Scalar* bias, Scalar* y, int64_t rows,
            int64_t in_features, int64_t out_features) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out_features; ++o) {
      double acc = bias ? double(bias[o]) : 0.0;
      for (int64_t i = 0; i < in_features; ++i)
        acc += double(x[r * in_features + i]) * double(detail::widen(weight[o * in_features + i]));
      y[r * out_features + o] = static_cast<Scalar>(acc);
    }
  }
}

}  // namespace reference
}  // namespace engram
