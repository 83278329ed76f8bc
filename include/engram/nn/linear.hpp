// engram/nn/linear.hpp: affine projection y = x W^T + b, as torch.nn.Linear.
//
//   x [rows, in], W [out, in] row-major (PyTorch layout), b [out] or none, y [rows, out]
//
// LinearT<Scalar, Weight>: Weight is Scalar, or BFloat16 with Scalar = float (half the bytes, each
// weight widened exactly, f32 sums). Kernels, on detail::kernel_threads() threads: float AVX-512
// builds multiply W packed into 64-row panels (detail::panel_product; the AVX-512 body is
// nn/detail/panel_kernel_x86.hpp); double or non-AVX-512 builds use OpenBLAS (engram::blas) or
// Eigen's GEMM. reference::linear is the plain spec; all kernels match it to float rounding, not
// bitwise across kernels, thread counts or builds. Bf16Compute::kNative: x rounded to bf16 on an
// AVX512-BF16 CPU, on vdpbf16ps or the f32 panel kernel as bf16_dot() picks.
// Ownership: views its weight and bias (they must outlive it); the packed copy is owned and shared
// by copies. Thread safety: forward is const; concurrent calls on distinct outputs are safe. The
// panel kernel packs x into a grow-only per-thread buffer (no allocation in the steady state).
// Design and measurements: docs/design/linear.md.
//
//   engram::LinearT<float, engram::BFloat16> proj(bf16_weight, out, in, f32_bias);
//   proj.forward(x.data(), rows, y.data());
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>

#ifdef ENGRAM_HAVE_BLAS
#include <cblas.h>
#endif

#include "engram/detail/aligned_buffer.hpp"
#include "engram/detail/cpu_features.hpp"
#include "engram/detail/float16.hpp"
#include "engram/detail/parallel.hpp"
#include "engram/error.hpp"
#include "engram/nn/bf16_dot.hpp"
#include "engram/nn/detail/bf16_linear_x86.hpp"
#include "engram/nn/detail/eigen_support.hpp"
#include "engram/nn/detail/panel_kernel_x86.hpp"

namespace engram {

namespace detail {

/// A weight element widened to float (exact for bf16).
inline float widen(float w) noexcept { return w; }
inline double widen(double w) noexcept { return w; }
inline float widen(BFloat16 w) noexcept { return bf16_bits_to_f32(w.bits); }

/// Whether panel_product has a vector kernel for Scalar in this build.
template <class Scalar>
inline constexpr bool kHasPanelKernel =
#if ENGRAM_HAVE_AVX512
    std::is_same_v<Scalar, float>;
#else
    false;
#endif

/// Panels needed for `out` W rows.
constexpr int64_t panel_count(int64_t out) noexcept {
  return (out + kPanelColumns - 1) / kPanelColumns;
}

/// Packs W [out, in] row-major into panel_count(out) panels of [in][kPanelColumns]: panel p,
/// row k holds W[p * 64 + j, k] for j < 64; columns past `out` are zero. packed holds
/// panel_count(out) * in * kPanelColumns values.
template <class W>
void pack_panels(const W* w, int64_t out, int64_t in, W* packed) noexcept {
  for (int64_t p = 0; p < panel_count(out); ++p) {
    W* panel = packed + p * in * kPanelColumns;
    for (int64_t j = 0; j < kPanelColumns; ++j) {
      const int64_t o = p * kPanelColumns + j;
      for (int64_t k = 0; k < in; ++k) panel[k * kPanelColumns + j] = o < out ? w[o * in + k] : W{};
    }
  }
}

/// y[r, o] = <x[r, :], W[o, :]> for r in [0, rows) and the columns o < out of panels
/// [p_begin, p_end): x [rows, in], W packed by pack_panels, y [rows, ldy]; other columns of y are
/// not touched. The AVX-512 kernel when kHasPanelKernel<Scalar>, else plain loops
/// (panel_product_reference, also the kernel's spec).
template <class Scalar, class W>
void panel_product_reference(const Scalar* x, int64_t rows, const W* packed, int64_t in,
                             int64_t out, Scalar* y, int64_t ldy, int64_t p_begin,
                             int64_t p_end) noexcept {
  for (int64_t p = p_begin; p < p_end; ++p)
    for (int64_t j = 0; j < kPanelColumns && p * kPanelColumns + j < out; ++j)
      for (int64_t r = 0; r < rows; ++r) {
        Scalar acc = 0;
        for (int64_t k = 0; k < in; ++k)
          acc += x[r * in + k] * Scalar(widen(packed[(p * in + k) * kPanelColumns + j]));
        y[r * ldy + p * kPanelColumns + j] = acc;
      }
}

/// x rows per pass of panel_product: a multiple of 6 (whole register blocks) whose rows take about
/// kChunkBytes, so a pass's x rows stay in L2 while the thread's panels stream past them once.
inline constexpr int64_t kChunkBytes = 512 * 1024;
template <class Scalar>
constexpr int64_t chunk_rows(int64_t in) noexcept {
  return std::max<int64_t>(6, kChunkBytes / (in * static_cast<int64_t>(sizeof(Scalar))) / 6 * 6);
}

/// Values of x as panel_product reads them: rows * in with the vector kernel (x packed by
/// pack_passes), else 0 (the plain loops read x itself).
template <class Scalar>
constexpr int64_t packed_x_size(int64_t rows, int64_t in) noexcept {
  return kHasPanelKernel<Scalar> ? rows * in : 0;
}

/// Packs the passes [pass_begin, pass_end) of x [rows, in] into xp (packed_x_size values), each
/// pass of `chunk` rows as pack_blocks lays it out, the pass at row r at xp + r * in; with
/// round_bf16 every value rounded to bf16 (nearest even). Nothing to do without the vector kernel.
/// Distinct passes may be packed concurrently.
template <class Scalar>
void pack_passes(const Scalar* x, int64_t rows, int64_t in, int64_t chunk, int64_t pass_begin,
                 int64_t pass_end, float* xp, bool round_bf16 = false) noexcept {
#if ENGRAM_HAVE_AVX512
  if constexpr (std::is_same_v<Scalar, float>) {
    for (int64_t pass = pass_begin; pass < pass_end; ++pass) {
      const int64_t r = pass * chunk;
      pack_blocks(x + r * in, std::min(chunk, rows - r), in, xp + r * in, round_bf16);
    }
    return;
  }
#endif
  (void)x, (void)rows, (void)in, (void)chunk, (void)pass_begin, (void)pass_end, (void)xp,
      (void)round_bf16;
}

/// panel_product_reference's contract with x given twice: `x` itself and `xp`, x packed by
/// pack_passes with the same `chunk` (x rows per pass, e.g. chunk_rows<Scalar>(in)). The vector
/// kernel reads xp, one pass at a time against every panel in [p_begin, p_end); the plain loops
/// read x. Allocates nothing: the caller packs x once and threads share it.
template <class Scalar, class W>
void panel_product(const Scalar* x, const float* xp, int64_t rows, const W* packed, int64_t in,
                   int64_t out, Scalar* y, int64_t ldy, int64_t p_begin, int64_t p_end,
                   int64_t chunk) noexcept {
#if ENGRAM_HAVE_AVX512
  if constexpr (std::is_same_v<Scalar, float>) {
    for (int64_t r = 0; r < rows; r += chunk) {
      const int64_t count = std::min(chunk, rows - r);
      for (int64_t p = p_begin; p < p_end; ++p)
        panel_rows(xp + r * in, count, packed + p * in * kPanelColumns, in,
                   y + r * ldy + p * kPanelColumns, ldy,
                   std::min(kPanelColumns, out - p * kPanelColumns));
    }
    return;
  }
#endif
  (void)xp, (void)chunk;
  panel_product_reference(x, rows, packed, in, out, y, ldy, p_begin, p_end);
}

/// The calling thread's buffer for x packed by pack_passes (grow-only: no allocation in the steady
/// state), one for every weight type.
inline AlignedBuffer<float>& packed_x_buffer() noexcept {
  thread_local AlignedBuffer<float> buffer;
  return buffer;
}

}  // namespace detail

/// How LinearT<float, BFloat16> multiplies.
enum class Bf16Compute {
  /// bf16 weights widened exactly, f32 activations (the default and the fallback).
  kExact,
  /// x rounded to bf16, exact products, f32 accumulation (PyTorch's bf16 Linear arithmetic, output
  /// kept in f32) where the CPU has AVX512-BF16 (active_isa()); kExact elsewhere. The products
  /// run on vdpbf16ps where bf16_dot() picks it (AMD), holding a second packed copy of W (as many
  /// bytes again); else on the f32 FMA panel kernel, x rounded as it is packed (Intel, where
  /// vdpbf16ps runs at half the FMA rate).
  kNative,
};

/// A borrowed [out, in] weight and optional [out] bias.
/// @tparam Scalar float or double (inputs, outputs, bias, accumulation).
/// @tparam Weight weight storage: Scalar, or BFloat16 when Scalar is float.
template <class Scalar = float, class Weight = Scalar>
class LinearT {
  static_assert(std::is_same_v<Weight, Scalar> ||
                    (std::is_same_v<Weight, BFloat16> && std::is_same_v<Scalar, float>),
                "LinearT: Weight must be Scalar, or BFloat16 with Scalar = float");

 public:
  /// W rows widened to f32 per GEMM call by the BFloat16 GEMM path.
  static constexpr int64_t kWidenRows = 256;

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
    if constexpr (detail::kHasPanelKernel<Scalar>) {
      auto packed = std::make_shared<detail::AlignedBuffer<Weight>>();
      detail::pack_panels(weight.data(), out_, in_,
                          packed->ensure(static_cast<size_t>(detail::panel_count(out_) * in_ *
                                                             detail::kPanelColumns)));
      packed_ = std::move(packed);
    }
  }

  /// bf16 weights with the given arithmetic (Bf16Compute::kNative on an AVX512-BF16 CPU packs W
  /// for vdpbf16ps when bf16_dot() picks it now, or always in builds without the AVX-512 panel
  /// kernel).
  LinearT(std::span<const Weight> weight, int64_t out_features, int64_t in_features,
          std::span<const Scalar> bias,
          Bf16Compute compute) requires std::is_same_v<Weight, BFloat16>
      : LinearT(weight, out_features, in_features, bias) {
    native_compute_ = compute == Bf16Compute::kNative && best_isa() >= Isa::kAvx512Bf16;
    if (native_compute_ && (!detail::kHasPanelKernel<Scalar> || bf16_dot() == Bf16Dot::kBf16)) {
      auto pairs = std::make_shared<detail::AlignedBuffer<std::uint16_t>>();
      detail::bf16n::pack_pair_panels(
          reinterpret_cast<const std::uint16_t*>(weight.data()), out_, in_,
          pairs->ensure(static_cast<size_t>(detail::bf16n::packed_size(out_, in_))));
      native_ = std::move(pairs);
    }
  }

  int64_t in_features() const noexcept { return in_; }
  int64_t out_features() const noexcept { return out_; }
  /// Whether forward runs native bf16 arithmetic, x rounded to bf16 (kNative on an AVX512-BF16
  /// CPU, not capped by set_isa_limit / ENGRAM_ISA).
  bool native_bf16() const noexcept { return native_compute_ && active_isa() >= Isa::kAvx512Bf16; }
  /// Whether that arithmetic runs on vdpbf16ps now: W was packed for it and bf16_dot() picks it
  /// (or the build has no AVX-512 panel kernel); else on the f32 FMA panel kernel.
  bool uses_vdpbf16ps() const noexcept {
    return native_bf16() && native_ &&
           (!detail::kHasPanelKernel<Scalar> || bf16_dot() == Bf16Dot::kBf16);
  }
  std::span<const Weight> weight() const noexcept { return weight_; }
  std::span<const Scalar> bias() const noexcept { return bias_; }

  /// y = x W^T (+ b when `add_bias` and a bias exists). x [rows, in], y [rows, out]; no aliasing.
  void forward(const Scalar* x, int64_t rows, Scalar* y, bool add_bias = true) const {
    if (rows <= 0) return;
    if (uses_vdpbf16ps()) return forward_native(x, rows, y, add_bias);
    if constexpr (detail::kHasPanelKernel<Scalar>) {
      // x packed once (the buffer grows here, outside the kernels: an allocation failure throws
      // to the caller; rounded to bf16 for native bf16 arithmetic), its passes split over the
      // threads; then the packed panels (64 W rows each) split over the threads, every thread
      // reading every pass.
      const bool round_x = native_bf16();
      const int64_t chunk = detail::chunk_rows<Scalar>(in_);
      float* xp = detail::packed_x_buffer().ensure(
          static_cast<size_t>(detail::packed_x_size<Scalar>(rows, in_)));
      detail::parallel_for((rows + chunk - 1) / chunk, 1, [&](int64_t begin, int64_t end, int) {
        detail::pack_passes(x, rows, in_, chunk, begin, end, xp, round_x);
      });
      const Weight* packed = packed_->data();
      detail::parallel_for(detail::panel_count(out_), 2, [&](int64_t begin, int64_t end, int) {
        detail::panel_product(x, xp, rows, packed, in_, out_, y, out_, begin, end, chunk);
      });
    } else if constexpr (std::is_same_v<Weight, Scalar>) {
      gemm(x, rows, weight_.data(), out_, y);
    } else {
      thread_local detail::AlignedBuffer<Scalar> panel;
      Scalar* wide = panel.ensure(static_cast<size_t>(std::min(kWidenRows, out_) * in_));
      for (int64_t o = 0; o < out_; o += kWidenRows) {
        const int64_t count = std::min(kWidenRows, out_ - o);
        detail::bf16_to_f32(weight_.data() + o * in_, wide, count * in_);
        gemm(x, rows, wide, count, y + o);
      }
    }
    if (add_bias && !bias_.empty()) {
      const Eigen::Map<const Eigen::Matrix<Scalar, 1, Eigen::Dynamic>> b(bias_.data(), out_);
      detail::RowMatrixMap<Scalar>(y, rows, out_).rowwise() += b;
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

  // Bf16Compute::kNative: x rows rounded to bf16 into a per-thread buffer, then the vdpbf16ps
  // panel kernel (bias added at the store).
  void forward_native(const Scalar* x, int64_t rows, Scalar* y, bool add_bias) const {
#if ENGRAM_FP8_X86
    if constexpr (std::is_same_v<Scalar, float>) {
      const int64_t ldx = detail::bf16n::padded_in(in_);
      thread_local detail::AlignedBuffer<std::uint16_t> buffer;
      std::uint16_t* xb = buffer.ensure(static_cast<size_t>(rows * ldx));
      for (int64_t r = 0; r < rows; ++r) {
        detail::f32_to_bf16(x + r * in_, xb + r * ldx, in_);
        if (ldx > in_) xb[r * ldx + in_] = 0;
      }
      const float* bias = add_bias && !bias_.empty() ? bias_.data() : nullptr;
      const std::uint16_t* packed = native_->data();
      detail::parallel_for(
          detail::bf16n::panel_count(out_), 2, [&](int64_t begin, int64_t end, int) {
            detail::bf16n::panels(packed, out_, xb, rows, ldx, bias, y, out_, begin, end);
          });
    }
#else
    (void)x, (void)rows, (void)y, (void)add_bias;
#endif
  }

  std::span<const Weight> weight_;
  std::span<const Scalar> bias_;
  // Bf16Compute::kNative on an AVX512-BF16 CPU (the arithmetic; native_bf16()).
  bool native_compute_ = false;
  // That arithmetic's W packed into pair panels for vdpbf16ps (shared by copies; see the
  // constructor).
  std::shared_ptr<const detail::AlignedBuffer<std::uint16_t>> native_;
  // W packed into panels for the panel kernel (kHasPanelKernel builds; shared by copies).
  std::shared_ptr<const detail::AlignedBuffer<Weight>> packed_;
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

/// The spec of Bf16Compute::kNative: x rounded to bf16 (nearest even), times the bf16 weights,
/// summed in double, plus the bias. bias may be null.
inline void linear_bf16_native(const float* x, const BFloat16* weight, const float* bias, float* y,
                               int64_t rows, int64_t in_features, int64_t out_features) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out_features; ++o) {
      double acc = bias ? double(bias[o]) : 0.0;
      for (int64_t i = 0; i < in_features; ++i) {
        const float xr = detail::bf16_bits_to_f32(detail::f32_to_bf16_bits(x[r * in_features + i]));
        acc += double(xr) * double(detail::widen(weight[o * in_features + i]));
      }
      y[r * out_features + o] = static_cast<float>(acc);
    }
  }
}

}  // namespace reference

#ifdef ENGRAM_EXTERN_TEMPLATES
// Compiled once in src/engram_instantiations.cpp (engram::instantiations).
extern template class LinearT<float>;
extern template class LinearT<float, BFloat16>;
#endif

}  // namespace engram
