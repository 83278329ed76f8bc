// engram/nn/gate.hpp: the context-aware gates of the Engram layer (a scalar per token, branch).
//
// Demo gate (EngramGateT), per token and hyper-connection branch i < hc, with the projected key
// key_i = W_k,i e + b_k,i and the hidden state h_i (both [d]):
//   k = RMSNorm(key_i; norm1_i, eps)   q = RMSNorm(h_i; norm2_i, eps)   eps = float32 epsilon
//   g = <k, q> / sqrt(d);   g = sign(g) * sqrt(max(|g|, 1e-6));   alpha_i = sigmoid(g)
// in one pass: <k, q> = sum(key * h * norm1 * norm2) * rsqrt(ms(key) + eps) * rsqrt(ms(h) + eps).
// The layer's branch output is alpha_i * v with the shared value v = W_v e + b_v.
//
// Fused gate (FusedGateT, V4.1 layout), kv = [key_0 .. key_{hc-1}, value] ([(hc + 1) * d]):
//   dot   = sum(h_i * q_weight_i * k_weight_i * key_i)
//           * rsqrt(ms(h_i) + eps) * rsqrt(ms(key_i) + eps) / sqrt(d)
//   g     = sqrt(max(|dot|, 1e-6)), negated when dot < 0 (dot == 0 gives +1e-3, unlike the demo)
//   out_i = h_i + sigmoid(g) * value
// ms(x) = mean(x^2). Ownership: the gates copy the product of their two norm weights ([hc, d]).
// Thread safety: const methods are safe to call concurrently.
// Not guaranteed: bitwise equality with PyTorch (summation order), behaviour on NaN/Inf inputs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "engram/error.hpp"
#include "engram/nn/detail/eigen_support.hpp"
#include "engram/nn/rms_norm.hpp"

namespace engram {

/// Floor of |g| before the square root in both gates.
inline constexpr double kGateMagnitudeFloor = 1e-6;

/// Demo gate nonlinearity: sign(g) * sqrt(max(|g|, 1e-6)), with sign(0) = 0 (torch.sign).
template <class Scalar>
Scalar signed_sqrt(Scalar g) noexcept {
  const Scalar root = std::sqrt(std::max(std::abs(g), Scalar(kGateMagnitudeFloor)));
  return g > 0 ? root : (g < 0 ? -root : Scalar(0));
}

/// Fused gate nonlinearity: sqrt(max(|g|, 1e-6)), negated only when g < 0 (torch.where(g < 0, ..)).
template <class Scalar>
Scalar signed_sqrt_zero_positive(Scalar g) noexcept {
  const Scalar root = std::sqrt(std::max(std::abs(g), Scalar(kGateMagnitudeFloor)));
  return g < 0 ? -root : root;
}

/// 1 / (1 + exp(-x)).
template <class Scalar>
Scalar sigmoid(Scalar x) noexcept {
  return Scalar(1) / (Scalar(1) + std::exp(-x));
}

namespace detail {
template <class Scalar>
std::vector<Scalar> product_of(std::span<const Scalar> a, std::span<const Scalar> b) {
  std::vector<Scalar> p(a.size());
  for (size_t j = 0; j < a.size(); ++j) p[j] = a[j] * b[j];
  return p;
}
}  // namespace detail

/// The demo module's gate: alpha[i] for each of the hc branches of one token.
/// @tparam Scalar float or double.
template <class Scalar = float>
class EngramGateT {
 public:
  EngramGateT() = default;
  /// @param key_norm_weight norm1.{i}.weight stacked, [hc, d]. @param query_norm_weight norm2, [hc,
  /// d].
  EngramGateT(int64_t hidden_size, int64_t hc_mult, std::span<const Scalar> key_norm_weight,
              std::span<const Scalar> query_norm_weight, double eps = kGateNormEps)
      : d_(hidden_size), hc_(hc_mult), eps_(eps) {
    ENGRAM_CHECK(hidden_size > 0 && hc_mult > 0, "EngramGate: sizes must be positive");
    ENGRAM_CHECK(static_cast<int64_t>(key_norm_weight.size()) == hc_ * d_ &&
                     static_cast<int64_t>(query_norm_weight.size()) == hc_ * d_,
                 "EngramGate: norm weights must have hc * d = ", hc_ * d_, " values, found ",
                 key_norm_weight.size(), " and ", query_norm_weight.size());
    norm_product_ = detail::product_of(key_norm_weight, query_norm_weight);
  }

  int64_t hidden_size() const noexcept { return d_; }
  int64_t hc_mult() const noexcept { return hc_; }

  /// keys: [hc, d] projections with bias; hidden: [hc, d]; alpha: [hc] gates in (0, 1).
  void forward(const Scalar* keys, const Scalar* hidden, Scalar* alpha) const noexcept {
    (void)forward(keys, nullptr, hidden, alpha);
  }

  /// As forward(keys, hidden, alpha) with the keys keys + key_bias (key_bias [hc, d] or null),
  /// the bias added on the fly. One pass over each branch: <key, h * w>, |key|^2 and |h|^2 summed
  /// together, kLanes lanes wide. Returns false when the sum of squares of hidden is not finite (a
  /// NaN or infinity in hidden, or values beyond the square root of the largest Scalar): alpha is
  /// then meaningless. (A NaN gate input does not show in alpha: signed_sqrt maps it to 0.)
  [[nodiscard]] bool forward(const Scalar* keys, const Scalar* key_bias, const Scalar* hidden,
                             Scalar* alpha) const noexcept {
    using Lanes = Eigen::Array<Scalar, kLanes, 1>;
    using LanesMap = Eigen::Map<const Lanes>;
    const Scalar inv_sqrt_d = Scalar(1) / std::sqrt(static_cast<Scalar>(d_));
    const int64_t whole = d_ / kLanes * kLanes;
    Scalar hidden_squares = 0;
    for (int64_t i = 0; i < hc_; ++i) {
      const Scalar* k = keys + i * d_;
      const Scalar* b = key_bias != nullptr ? key_bias + i * d_ : nullptr;
      const Scalar* h = hidden + i * d_;
      const Scalar* w = norm_product_.data() + i * d_;
      Lanes dot = Lanes::Zero(), kk = Lanes::Zero(), hh = Lanes::Zero();
      for (int64_t j = 0; j < whole; j += kLanes) {
        Lanes kj = LanesMap(k + j);
        if (b != nullptr) kj += LanesMap(b + j);
        const Lanes hj = LanesMap(h + j);
        dot += kj * hj * LanesMap(w + j);
        kk += kj.square();
        hh += hj.square();
      }
      Scalar dot_sum = dot.sum(), kk_sum = kk.sum(), hh_sum = hh.sum();
      for (int64_t j = whole; j < d_; ++j) {
        const Scalar kj = b != nullptr ? k[j] + b[j] : k[j];
        dot_sum += kj * h[j] * w[j];
        kk_sum += kj * kj;
        hh_sum += h[j] * h[j];
      }
      const Scalar g = dot_sum * RmsNormT<Scalar>::inverse_rms(kk_sum, d_, eps_) *
                       RmsNormT<Scalar>::inverse_rms(hh_sum, d_, eps_) * inv_sqrt_d;
      alpha[i] = sigmoid(signed_sqrt(g));
      hidden_squares += hh_sum;
    }
    return std::isfinite(hidden_squares);
  }

 private:
  /// Accumulator lanes of the one-pass sums: one 64-byte vector.
  static constexpr int kLanes = 64 / static_cast<int>(sizeof(Scalar));

  int64_t d_ = 0;
  int64_t hc_ = 0;
  double eps_ = kGateNormEps;
  std::vector<Scalar> norm_product_;  // norm1 * norm2, [hc, d]
};

using EngramGate = EngramGateT<float>;

/// The fused (V4.1) gate with the residual: out_i = h_i + alpha_i * value.
/// @tparam Scalar float or double.
template <class Scalar = float>
class FusedGateT {
 public:
  FusedGateT() = default;
  /// @param q_weight, k_weight [hc, d] (checkpoint q_weight / k_weight). @param eps rms_norm_eps.
  FusedGateT(int64_t hidden_size, int64_t hc_mult, std::span<const Scalar> q_weight,
             std::span<const Scalar> k_weight, double eps)
      : d_(hidden_size), hc_(hc_mult), eps_(eps) {
    ENGRAM_CHECK(hidden_size > 0 && hc_mult > 0, "FusedGate: sizes must be positive");
    ENGRAM_CHECK(static_cast<int64_t>(q_weight.size()) == hc_ * d_ &&
                     static_cast<int64_t>(k_weight.size()) == hc_ * d_,
                 "FusedGate: q_weight and k_weight must have hc * d = ", hc_ * d_,
                 " values, found ", q_weight.size(), " and ", k_weight.size());
    weight_product_ = detail::product_of(q_weight, k_weight);
  }

  int64_t hidden_size() const noexcept { return d_; }
  int64_t hc_mult() const noexcept { return hc_; }

  /// The gate of branch i: kv [(hc + 1) * d] keys then value, hidden [hc, d].
  Scalar alpha(const Scalar* kv, const Scalar* hidden, int64_t i) const noexcept {
    const detail::ConstArrayMap<Scalar> k(kv + i * d_, d_);
    const detail::ConstArrayMap<Scalar> h(hidden + i * d_, d_);
    const detail::ConstArrayMap<Scalar> w(weight_product_.data() + i * d_, d_);
    const Scalar dot = (h * w * k).sum() *
                       RmsNormT<Scalar>::inverse_rms(h.square().sum(), d_, eps_) *
                       RmsNormT<Scalar>::inverse_rms(k.square().sum(), d_, eps_) /
                       std::sqrt(static_cast<Scalar>(d_));
    return sigmoid(signed_sqrt_zero_positive(dot));
  }

  /// out: [hc, d] = hidden_i + alpha_i * value. out must not alias kv; it may alias hidden.
  void forward(const Scalar* kv, const Scalar* hidden, Scalar* out) const noexcept {
    constexpr int64_t kBlock = 256;
    const Scalar* value = kv + hc_ * d_;
    for (int64_t i = 0; i < hc_; ++i) {
      const Scalar a = alpha(kv, hidden, i);
      // a * value in an aligned block first: separate roundings whatever the buffers' alignment
      for (int64_t j0 = 0; j0 < d_; j0 += kBlock) {
        const int64_t n = std::min(kBlock, d_ - j0);
        Eigen::Array<Scalar, Eigen::Dynamic, 1, 0, kBlock, 1> scaled(n);
        scaled = a * detail::ConstArrayMap<Scalar>(value + j0, n);
        detail::ArrayMap<Scalar>(out + i * d_ + j0, n) =
            detail::ConstArrayMap<Scalar>(hidden + i * d_ + j0, n) + scaled;
      }
    }
  }

 private:
  int64_t d_ = 0;
  int64_t hc_ = 0;
  double eps_ = 1e-6;
  std::vector<Scalar> weight_product_;  // q_weight * k_weight, [hc, d]
};

using FusedGate = FusedGateT<float>;

namespace reference {

/// The demo gate for one branch, step by step as the PyTorch module: two RMSNorms, dot, signed
/// sqrt, sigmoid. key, hidden, norm1, norm2: [d]. Sums in double.
template <class Scalar>
Scalar engram_gate(const Scalar* key, const Scalar* hidden, const Scalar* norm1,
                   const Scalar* norm2, int64_t d, double eps = kGateNormEps) {
  std::vector<Scalar> k(d), q(d);
  rms_norm(key, norm1, eps, k.data(), 1, d);
  rms_norm(hidden, norm2, eps, q.data(), 1, d);
  double dot = 0;
  for (int64_t j = 0; j < d; ++j) dot += double(k[j]) * double(q[j]);
  const double g = dot / std::sqrt(double(d));
  return static_cast<Scalar>(sigmoid(signed_sqrt(g)));
}

/// The fused gate for one branch as EngramFused.forward: key, hidden, q_weight, k_weight [d].
template <class Scalar>
Scalar fused_gate(const Scalar* key, const Scalar* hidden, const Scalar* q_weight,
                  const Scalar* k_weight, int64_t d, double eps) {
  double dot = 0, hh = 0, kk = 0;
  for (int64_t j = 0; j < d; ++j) {
    dot += double(hidden[j]) * double(q_weight[j]) * double(k_weight[j]) * double(key[j]);
    hh += double(hidden[j]) * double(hidden[j]);
    kk += double(key[j]) * double(key[j]);
  }
  dot = dot / std::sqrt(hh / double(d) + eps) / std::sqrt(kk / double(d) + eps) /
        std::sqrt(double(d));
  return static_cast<Scalar>(sigmoid(signed_sqrt_zero_positive(dot)));
}

}  // namespace reference

#ifdef ENGRAM_EXTERN_TEMPLATES
// Compiled once in src/engram_instantiations.cpp (engram::instantiations).
extern template class EngramGateT<float>;
extern template class FusedGateT<float>;
#endif

}  // namespace engram
