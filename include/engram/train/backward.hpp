// engram/train/backward.hpp: training forward and backward of both Engram blocks.
//
//   forward(params, hash_ids [B, T, cols], hidden [B, T, hc, d], B, T, out [B, T, hc, d], tape,
//           live = {} or [B, T] (fused only; 0 = dead token: gate shut, rows not read))
//   backward(params, grad_output [B, T, hc, d], tape, grads)
//     grads.hidden  = dL/dhidden                               [B, T, hc, d]
//     grads.dense   = dL/dW for every dense tensor, official names (params.hpp), overwritten
//     grads.table   = dL/dtable on the rows the live tokens read (sorted, global rows)
// The forward equals EngramLayerT (demo: out = y + ShortConv(y), y_i = alpha_i * value, residual
// not included) and FusedEngramLayerT (fused / V4.1 in f32 or f64: out = h + alpha * value, no FP8
// activation quantisation) up to float rounding, computed from params (not from a loaded layer),
// so an optimiser can change params between steps. Gradients follow PyTorch autograd of the oracle
// module, including its subgradients (clamp_min(1e-6) passes none below the floor; sign(0) = 0).
// Determinism: every sum runs in a fixed order (per-token work in parallel; reductions over tokens
// in token order, parallel over features; GEMMs in fixed tiles, train/detail/gemm.hpp), so results
// are bitwise the same for any Eigen::nbThreads(). Tape: save or recompute mode (tape.hpp).
// Threads: detail::kernel_threads(). Errors: ENGRAM_CHECK on shapes and ids before any kernel.
// Example:
//   engram::train::Tape tape;  engram::train::Grads grads;
//   engram::train::forward(params, hash_ids, hidden, B, T, out, tape);
//   engram::train::backward(params, grad_out, tape, grads);
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "engram/error.hpp"
#include "engram/nn/detail/eigen_support.hpp"
#include "engram/nn/gate.hpp"
#include "engram/nn/rms_norm.hpp"
#include "engram/train/detail/gemm.hpp"
#include "engram/train/params.hpp"
#include "engram/train/sparse_grad.hpp"
#include "engram/train/tape.hpp"

namespace engram::train {

namespace detail {

using engram::detail::parallel_for;

template <class T>
T* sized(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

template <class Scalar>
Scalar inverse_rms(const Scalar* x, int64_t d, double eps) {
  Scalar sum = 0;
  for (int64_t j = 0; j < d; ++j) sum += x[j] * x[j];
  return Scalar(1) / std::sqrt(sum / static_cast<Scalar>(d) + static_cast<Scalar>(eps));
}

/// dx of xn = x * r * w, r = rsqrt(mean(x^2) + eps): dx = r w dxn - x r^3 / d sum(dxn w x).
/// Writes (or adds, when Add) into dx (which may be dxn); wgrad[j] = dxn_j x_j r (the weight's
/// per-token gradient).
template <class Scalar, bool Add>
void rms_norm_backward(const Scalar* dxn, const Scalar* x, Scalar r, const Scalar* w, int64_t d,
                       Scalar* dx, Scalar* wgrad) {
  Scalar sum = 0;
  for (int64_t j = 0; j < d; ++j) sum += dxn[j] * w[j] * x[j];
  const Scalar c = sum * r * r * r / static_cast<Scalar>(d);
  for (int64_t j = 0; j < d; ++j) {
    const Scalar g = r * w[j] * dxn[j] - x[j] * c;
    wgrad[j] = dxn[j] * x[j] * r;
    if constexpr (Add)
      dx[j] += g;
    else
      dx[j] = g;
  }
}

/// d sigmoid(signed_sqrt(s)) / ds * a-gradient: the gate's chain, zero below the 1e-6 floor.
template <class Scalar>
Scalar gate_backward(Scalar grad_alpha, Scalar alpha, Scalar s) {
  const Scalar grad_g = grad_alpha * alpha * (Scalar(1) - alpha);
  const Scalar magnitude = std::abs(s);
  if (!(magnitude >= static_cast<Scalar>(kGateMagnitudeFloor))) return Scalar(0);
  return grad_g * Scalar(0.5) / std::sqrt(magnitude);
}

/// out[f] = sum over tokens t (in order) of per_token[t * stride + f], f < width; parallel over f.
template <class Scalar>
void reduce_tokens(const Scalar* per_token, int64_t tokens, int64_t stride, int64_t width,
                   Scalar* out) {
  parallel_for(width, 64, [&](int64_t begin, int64_t end, int) {
    for (int64_t f = begin; f < end; ++f) out[f] = 0;
    for (int64_t t = 0; t < tokens; ++t) {
      const Scalar* row = per_token + t * stride;
      for (int64_t f = begin; f < end; ++f) out[f] += row[f];
    }
  });
}

template <class Scalar>
void check_params(const ParamsT<Scalar>& p) {
  const EngramConfig& c = p.config;
  const auto layout = dense_layout(c);
  ENGRAM_CHECK(p.dense.size() == layout.size(), "train::Params: ", p.dense.size(),
               " dense tensors, expected ", layout.size(), " for this config");
  for (size_t i = 0; i < layout.size(); ++i) {
    int64_t n = 1;
    for (int64_t s : layout[i].second) n *= s;
    ENGRAM_CHECK(p.dense[i].name == layout[i].first && p.dense[i].numel() == n,
                 "train::Params: tensor ", i, " is '", p.dense[i].name, "' with ",
                 p.dense[i].numel(), " values, expected '", layout[i].first, "' with ", n);
  }
  const int64_t cols = c.num_columns();
  ENGRAM_CHECK(static_cast<int64_t>(p.column_rows.size()) == cols &&
                   static_cast<int64_t>(p.column_offsets.size()) == cols,
               "train::Params: column_rows and column_offsets must have ", cols, " entries");
  for (int64_t k = 0; k < cols; ++k)
    ENGRAM_CHECK(p.column_offsets[k] >= 0 && p.column_offsets[k] + p.column_rows[k] <= p.table_rows,
                 "train::Params: column ", k, " rows [", p.column_offsets[k], ", ",
                 p.column_offsets[k] + p.column_rows[k], ") exceed the table's ", p.table_rows);
  ENGRAM_CHECK(static_cast<int64_t>(p.table.size()) == p.table_rows * c.row_dim(),
               "train::Params: table holds ", p.table.size(), " values, expected table_rows * ",
               "row_dim = ", p.table_rows * c.row_dim());
}

/// Stacked [(hc + 1) * d, m] projection and bias of the demo block into scratch (copies).
template <class Scalar>
void stack_demo_projection(const ParamsT<Scalar>& p, std::vector<Scalar>& weight,
                           std::vector<Scalar>& bias) {
  const int64_t d = p.config.hidden_size, hc = p.config.hc_mult, m = p.config.memory_dim();
  Scalar* w = sized(weight, (hc + 1) * d * m);
  Scalar* b = sized(bias, (hc + 1) * d);
  for (int64_t i = 0; i <= hc; ++i) {
    // dense order: key_projs.{i}.weight, key_projs.{i}.bias ..., value_proj.weight, value_proj.bias
    const auto& wt = p.dense[static_cast<size_t>(2 * i)].value;
    const auto& bt = p.dense[static_cast<size_t>(2 * i + 1)].value;
    std::copy(wt.begin(), wt.end(), w + i * d * m);
    std::copy(bt.begin(), bt.end(), b + i * d);
  }
}

template <class Scalar>
struct Layout {
  int64_t d, hc, c, cols, r, m, n, tokens;
  explicit Layout(const EngramConfig& config, int64_t token_count)
      : d(config.hidden_size),
        hc(config.hc_mult),
        c(config.hc_mult * config.hidden_size),
        cols(config.num_columns()),
        r(config.row_dim()),
        m(config.memory_dim()),
        n((config.hc_mult + 1) * config.hidden_size),
        tokens(token_count) {}
};

/// The forward's arithmetic from the tape's inputs into `a`; writes out when given.
template <class Scalar>
void run_forward(const ParamsT<Scalar>& p, TapeT<Scalar>& tape, ActivationsT<Scalar>& a,
                 Scalar* out) {
  const EngramConfig& config = p.config;
  const bool fused = config.variant == Variant::kFused;
  const Layout<Scalar> L(config, tape.tokens());
  const int64_t N = L.tokens, d = L.d, hc = L.hc, c = L.c, n = L.n, m = L.m, r = L.r;
  Scalar* e = sized(a.memory, N * m);
  Scalar* kv = sized(a.kv, N * n);
  Scalar* rms_a = sized(a.inv_rms_a, N * hc);
  Scalar* rms_b = sized(a.inv_rms_b, N * hc);
  Scalar* s = sized(a.scaled_dot, N * hc);
  Scalar* alpha = sized(a.gate, N * hc);
  const int64_t* rows = tape.rows_.data();
  const Scalar* h = tape.hidden_.data();
  const Scalar* table = p.table.data();

  parallel_for(N, 16, [&](int64_t begin, int64_t end, int) {
    for (int64_t t = begin; t < end; ++t)
      for (int64_t k = 0; k < L.cols; ++k) {
        const int64_t row = rows[t * L.cols + k];
        Scalar* dst = e + t * m + k * r;
        if (row < 0)
          std::fill(dst, dst + r, Scalar(0));
        else
          std::copy(table + row * r, table + (row + 1) * r, dst);
      }
  });
  std::fill(kv, kv + N * n, Scalar(0));
  const Scalar* w = nullptr;
  if (fused) {
    w = p.dense[0].value.data();
  } else {
    stack_demo_projection(p, a.stacked_weight, a.stacked_bias);
    w = a.stacked_weight.data();
  }
  // kv[N, n] = e[N, m] W^T, W [n, m]
  tiled_gemm<Scalar, false, true>(N, n, m, e, m, w, m, kv, n);

  const Scalar inv_sqrt_d = Scalar(1) / std::sqrt(static_cast<Scalar>(d));
  if (fused) {
    Scalar* raw = sized(a.dot, N * hc);
    const Scalar* q_weight = p.dense[1].value.data();
    const Scalar* k_weight = p.dense[2].value.data();
    const uint8_t* live = tape.live_.empty() ? nullptr : tape.live_.data();
    const double eps = config.rms_norm_eps;
    parallel_for(N, 16, [&](int64_t begin, int64_t end, int) {
      for (int64_t t = begin; t < end; ++t) {
        const Scalar* value = kv + t * n + hc * d;
        for (int64_t i = 0; i < hc; ++i) {
          const Scalar* hi = h + t * c + i * d;
          const Scalar* ki = kv + t * n + i * d;
          const int64_t at = t * hc + i;
          Scalar dot = 0;
          for (int64_t j = 0; j < d; ++j)
            dot += hi[j] * q_weight[i * d + j] * k_weight[i * d + j] * ki[j];
          raw[at] = dot;
          rms_a[at] = inverse_rms(hi, d, eps);
          rms_b[at] = inverse_rms(ki, d, eps);
          s[at] = dot * rms_a[at] * rms_b[at] * inv_sqrt_d;
          alpha[at] = (live && !live[t]) ? Scalar(0) : sigmoid(signed_sqrt_zero_positive(s[at]));
          if (out)
            for (int64_t j = 0; j < d; ++j) out[t * c + i * d + j] = hi[j] + alpha[at] * value[j];
        }
      }
    });
    return;
  }
  // demo: gate, y, conv norm
  Scalar* rms_c = sized(a.inv_rms_c, N * hc);
  Scalar* y = sized(a.y, N * c);
  Scalar* xn = sized(a.conv_in, N * c);
  Scalar* z = sized(a.conv_out, N * c);
  const Scalar* bias = a.stacked_bias.data();
  // dense indices: norm1.i at 2 (hc + 1) + i, norm2.i at 2 (hc + 1) + hc + i, conv, conv norms
  const size_t norm1 = static_cast<size_t>(2 * (hc + 1)), norm2 = norm1 + hc, conv = norm2 + hc,
               conv_norms = conv + 1;
  parallel_for(N, 16, [&](int64_t begin, int64_t end, int) {
    for (int64_t t = begin; t < end; ++t) {
      Scalar* row = kv + t * n;
      for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
      const Scalar* value = row + hc * d;
      for (int64_t i = 0; i < hc; ++i) {
        const Scalar* ki = row + i * d;
        const Scalar* hi = h + t * c + i * d;
        const Scalar* w1 = p.dense[norm1 + i].value.data();
        const Scalar* w2 = p.dense[norm2 + i].value.data();
        const int64_t at = t * hc + i;
        rms_a[at] = inverse_rms(ki, d, kGateNormEps);
        rms_b[at] = inverse_rms(hi, d, kGateNormEps);
        Scalar dot = 0;
        for (int64_t j = 0; j < d; ++j)
          dot += (ki[j] * rms_a[at] * w1[j]) * (hi[j] * rms_b[at] * w2[j]);
        s[at] = dot * inv_sqrt_d;
        alpha[at] = sigmoid(signed_sqrt(s[at]));
        Scalar* yi = y + t * c + i * d;
        for (int64_t j = 0; j < d; ++j) yi[j] = alpha[at] * value[j];
        rms_c[at] = inverse_rms(yi, d, kConvNormEps);
        const Scalar* wc = p.dense[conv_norms + i].value.data();
        for (int64_t j = 0; j < d; ++j) xn[t * c + i * d + j] = yi[j] * rms_c[at] * wc[j];
      }
    }
  });
  // causal depthwise dilated conv per sequence: z[t, ch] = sum_q w[ch, q] xn[t - (k-1-q) dil, ch]
  const int64_t T = tape.seq_len(), kernel = config.kernel_size, dil = config.max_ngram_size;
  const Scalar* cw = p.dense[conv].value.data();
  parallel_for(N, 16, [&](int64_t begin, int64_t end, int) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t pos = t % T;
      for (int64_t ch = 0; ch < c; ++ch) {
        Scalar acc = 0;
        for (int64_t q = 0; q < kernel; ++q) {
          const int64_t back = (kernel - 1 - q) * dil;
          if (pos >= back) acc += cw[ch * kernel + q] * xn[(t - back) * c + ch];
        }
        z[t * c + ch] = acc;
        if (out) {
          const Scalar sg = sigmoid(acc);
          out[t * c + ch] = y[t * c + ch] + acc * sg;
        }
      }
    }
  });
}

}  // namespace detail

/// Training forward: out [B, T, hc, d] from explicit params, recording `tape` (see the banner).
template <class Scalar>
void forward(const ParamsT<Scalar>& params, std::span<const int64_t> hash_ids,
             std::span<const Scalar> hidden, int64_t batch, int64_t seq_len, std::span<Scalar> out,
             TapeT<Scalar>& tape, std::span<const uint8_t> live = {}) {
  detail::check_params(params);
  const EngramConfig& config = params.config;
  const detail::Layout<Scalar> L(config, batch * seq_len);
  ENGRAM_CHECK(batch >= 0 && seq_len >= 0, "train::forward: negative batch or seq_len");
  ENGRAM_CHECK(static_cast<int64_t>(hash_ids.size()) == L.tokens * L.cols,
               "train::forward: hash_ids has ", hash_ids.size(),
               " values, expected [B, T, cols] = ", L.tokens * L.cols);
  ENGRAM_CHECK(static_cast<int64_t>(hidden.size()) == L.tokens * L.c &&
                   static_cast<int64_t>(out.size()) == L.tokens * L.c,
               "train::forward: hidden and out must hold [B, T, hc, d] = ", L.tokens * L.c,
               " values, found ", hidden.size(), " and ", out.size());
  ENGRAM_CHECK(live.empty() || static_cast<int64_t>(live.size()) == L.tokens,
               "train::forward: live must be empty or [B, T] = ", L.tokens, ", found ",
               live.size());
  ENGRAM_CHECK(live.empty() || config.variant == Variant::kFused,
               "train::forward: a live mask needs the fused (V4.1) block");
  tape.batch_ = batch;
  tape.seq_len_ = seq_len;
  tape.hidden_.assign(hidden.begin(), hidden.end());
  tape.live_.assign(live.begin(), live.end());
  tape.rows_.resize(static_cast<size_t>(L.tokens * L.cols));
  for (int64_t t = 0; t < L.tokens; ++t)
    for (int64_t k = 0; k < L.cols; ++k) {
      const int64_t at = t * L.cols + k;
      if (!live.empty() && !live[t]) {
        tape.rows_[at] = -1;
        continue;
      }
      const int64_t id = hash_ids[at];
      ENGRAM_CHECK(id >= 0 && id < params.column_rows[k], "train::forward: hash id ", id,
                   " at token ", t, " column ", k, " is out of range [0, ", params.column_rows[k],
                   ")");
      tape.rows_[at] = params.column_offsets[k] + id;
    }
  auto& a = tape.activations();
  detail::run_forward(params, tape, a, out.data());
  a.valid = true;
  tape.recorded_ = true;
}

/// Backward of the tape's forward: fills grads (see the banner). Recompute mode reruns the
/// forward first. grads.dense is resized to params' layout and overwritten.
template <class Scalar>
void backward(const ParamsT<Scalar>& params, std::span<const Scalar> grad_output,
              TapeT<Scalar>& tape, GradsT<Scalar>& grads) {
  ENGRAM_CHECK(tape.recorded(), "train::backward: the tape holds no forward");
  detail::check_params(params);
  const EngramConfig& config = params.config;
  const bool fused = config.variant == Variant::kFused;
  const detail::Layout<Scalar> L(config, tape.tokens());
  const int64_t N = L.tokens, d = L.d, hc = L.hc, c = L.c, n = L.n, m = L.m;
  ENGRAM_CHECK(static_cast<int64_t>(grad_output.size()) == N * c,
               "train::backward: grad_output has ", grad_output.size(),
               " values, expected [B, T, hc, d] = ", N * c);
  auto& a = tape.activations();
  if (tape.recompute() || !a.valid) {  // recompute mode: rerun the forward into the workspace
    detail::run_forward(params, tape, a, static_cast<Scalar*>(nullptr));
    a.valid = true;
  }  // save mode: a.stacked_weight still holds the forward's (unchanged) projection
  if (grads.dense.size() != params.dense.size()) grads.dense = zero_dense<Scalar>(config);
  grads.hidden.resize(static_cast<size_t>(N * c));

  const Scalar* h = tape.hidden_.data();
  const Scalar* go = grad_output.data();
  Scalar* dh = grads.hidden.data();
  const Scalar* kv = a.kv.data();
  const Scalar* s = a.scaled_dot.data();
  const Scalar* alpha = a.gate.data();
  const Scalar* rms_a = a.inv_rms_a.data();
  const Scalar* rms_b = a.inv_rms_b.data();
  Scalar* dkv = detail::sized(a.grad_kv, N * n);
  Scalar* per_a = detail::sized(a.scratch_a, N * c);
  Scalar* per_b = detail::sized(a.scratch_b, N * c);
  const Scalar inv_sqrt_d = Scalar(1) / std::sqrt(static_cast<Scalar>(d));

  if (fused) {
    const Scalar* raw = a.dot.data();
    const Scalar* q_weight = params.dense[1].value.data();
    const Scalar* k_weight = params.dense[2].value.data();
    detail::parallel_for(N, 16, [&](int64_t begin, int64_t end, int) {
      for (int64_t t = begin; t < end; ++t) {
        const Scalar* value = kv + t * n + hc * d;
        Scalar* dvalue = dkv + t * n + hc * d;
        std::fill(dvalue, dvalue + d, Scalar(0));
        for (int64_t i = 0; i < hc; ++i) {
          const int64_t at = t * hc + i;
          const Scalar* gi = go + t * c + i * d;
          const Scalar* hi = h + t * c + i * d;
          const Scalar* ki = kv + t * n + i * d;
          Scalar* dhi = dh + t * c + i * d;
          Scalar* dki = dkv + t * n + i * d;
          Scalar grad_alpha = 0;
          for (int64_t j = 0; j < d; ++j) {
            grad_alpha += gi[j] * value[j];
            dvalue[j] += alpha[at] * gi[j];
            dhi[j] = gi[j];
          }
          const bool dead = !tape.live_.empty() && !tape.live_[t];
          const Scalar ds = dead ? Scalar(0) : detail::gate_backward(grad_alpha, alpha[at], s[at]);
          const Scalar ra = rms_a[at], rb = rms_b[at];
          const Scalar dp = ds * ra * rb * inv_sqrt_d;
          const Scalar dra = ds * raw[at] * rb * inv_sqrt_d, drb = ds * raw[at] * ra * inv_sqrt_d;
          const Scalar ch = dra * ra * ra * ra / static_cast<Scalar>(d);
          const Scalar ck = drb * rb * rb * rb / static_cast<Scalar>(d);
          for (int64_t j = 0; j < d; ++j) {
            const Scalar q = q_weight[i * d + j], kw = k_weight[i * d + j];
            dhi[j] += dp * q * kw * ki[j] - ch * hi[j];
            dki[j] = dp * q * kw * hi[j] - ck * ki[j];
            const Scalar dw = dp * hi[j] * ki[j];
            per_a[t * c + i * d + j] = dw * kw;  // q_weight
            per_b[t * c + i * d + j] = dw * q;   // k_weight
          }
        }
      }
    });
    detail::reduce_tokens(per_a, N, c, c, grads.dense[1].value.data());
    detail::reduce_tokens(per_b, N, c, c, grads.dense[2].value.data());
  } else {
    const int64_t T = tape.seq_len(), kernel = config.kernel_size, dil = config.max_ngram_size;
    const size_t norm1 = static_cast<size_t>(2 * (hc + 1)), norm2 = norm1 + hc, conv = norm2 + hc,
                 conv_norms = conv + 1;
    const Scalar* y = a.y.data();
    const Scalar* xn = a.conv_in.data();
    const Scalar* z = a.conv_out.data();
    const Scalar* rms_c = a.inv_rms_c.data();
    const Scalar* cw = params.dense[conv].value.data();
    Scalar* dz = detail::sized(a.scratch_c, N * c);
    Scalar* dxn = detail::sized(a.scratch_d, N * c);
    // dz = grad_output * silu'(z)
    detail::parallel_for(N * c, 4096, [&](int64_t begin, int64_t end, int) {
      for (int64_t i = begin; i < end; ++i) {
        const Scalar sg = sigmoid(z[i]);
        dz[i] = go[i] * sg * (Scalar(1) + z[i] * (Scalar(1) - sg));
      }
    });
    // conv weight: per channel, sum over tokens in order (channels inner: contiguous rows)
    Scalar* dcw = grads.dense[conv].value.data();
    detail::parallel_for(c, 64, [&](int64_t begin, int64_t end, int) {
      for (int64_t ch = begin; ch < end; ++ch)
        for (int64_t q = 0; q < kernel; ++q) dcw[ch * kernel + q] = 0;
      for (int64_t t = 0; t < N; ++t)
        for (int64_t q = 0; q < kernel; ++q) {
          const int64_t back = (kernel - 1 - q) * dil;
          if (t % T < back) continue;
          const Scalar* dz_row = dz + t * c;
          const Scalar* xn_row = xn + (t - back) * c;
          for (int64_t ch = begin; ch < end; ++ch) dcw[ch * kernel + q] += dz_row[ch] * xn_row[ch];
        }
    });
    // dxn[t'] = sum_q dz[t' + back_q] w[q]
    detail::parallel_for(N, 16, [&](int64_t begin, int64_t end, int) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t pos = t % T;
        for (int64_t ch = 0; ch < c; ++ch) {
          Scalar acc = 0;
          for (int64_t q = 0; q < kernel; ++q) {
            const int64_t back = (kernel - 1 - q) * dil;
            if (pos + back < T) acc += dz[(t + back) * c + ch] * cw[ch * kernel + q];
          }
          dxn[t * c + ch] = acc;
        }
      }
    });
    // per token: conv norm, gate, key/query norms. per_a: conv norm, per_b: norm1, dz: norm2
    // (dz is dead after dxn; reused as scratch)
    Scalar* per_c = dz;
    detail::parallel_for(N, 16, [&](int64_t begin, int64_t end, int) {
      for (int64_t t = begin; t < end; ++t) {
        const Scalar* value = kv + t * n + hc * d;
        Scalar* dvalue = dkv + t * n + hc * d;
        std::fill(dvalue, dvalue + d, Scalar(0));
        for (int64_t i = 0; i < hc; ++i) {
          const int64_t at = t * hc + i, off = t * c + i * d;
          const Scalar* wc = params.dense[conv_norms + i].value.data();
          const Scalar* w1 = params.dense[norm1 + i].value.data();
          const Scalar* w2 = params.dense[norm2 + i].value.data();
          const Scalar* ki = kv + t * n + i * d;
          const Scalar* hi = h + off;
          Scalar* dy = dxn + off;  // in place: dxn -> dy
          detail::rms_norm_backward<Scalar, false>(dy, y + off, rms_c[at], wc, d, dy, per_a + off);
          Scalar grad_alpha = 0;
          for (int64_t j = 0; j < d; ++j) {
            dy[j] += go[off + j];
            grad_alpha += dy[j] * value[j];
            dvalue[j] += alpha[at] * dy[j];
          }
          const Scalar ds = detail::gate_backward(grad_alpha, alpha[at], s[at]) * inv_sqrt_d;
          Scalar* dk = dkv + t * n + i * d;  // in place: d(normed key) -> d key
          Scalar* dq = dh + off;             // in place: d(normed query) -> d hidden
          for (int64_t j = 0; j < d; ++j) {
            dk[j] = ds * hi[j] * rms_b[at] * w2[j];
            dq[j] = ds * ki[j] * rms_a[at] * w1[j];
          }
          detail::rms_norm_backward<Scalar, false>(dk, ki, rms_a[at], w1, d, dk, per_b + off);
          detail::rms_norm_backward<Scalar, false>(dq, hi, rms_b[at], w2, d, dq, per_c + off);
        }
      }
    });
    for (int64_t i = 0; i < hc; ++i) {
      detail::reduce_tokens(per_a + i * d, N, c, d, grads.dense[conv_norms + i].value.data());
      detail::reduce_tokens(per_b + i * d, N, c, d, grads.dense[norm1 + i].value.data());
      detail::reduce_tokens(per_c + i * d, N, c, d, grads.dense[norm2 + i].value.data());
    }
    // biases: sum over tokens of dkv
    for (int64_t i = 0; i <= hc; ++i)
      detail::reduce_tokens(dkv + i * d, N, n, d,
                            grads.dense[static_cast<size_t>(2 * i + 1)].value.data());
  }

  // projection: dW [n, m] = dkv^T e, de [N, m] = dkv W
  const Scalar* e = a.memory.data();
  const Scalar* w = fused ? params.dense[0].value.data() : a.stacked_weight.data();
  Scalar* dw = fused ? grads.dense[0].value.data() : detail::sized(a.grad_weight, n * m);
  std::fill(dw, dw + n * m, Scalar(0));
  detail::tiled_gemm<Scalar, true, false>(n, m, N, dkv, n, e, m, dw, m);
  Scalar* de = detail::sized(a.grad_memory, N * m);
  std::fill(de, de + N * m, Scalar(0));
  detail::tiled_gemm<Scalar, false, false>(N, m, n, dkv, n, w, m, de, m);
  if (!fused)
    for (int64_t i = 0; i <= hc; ++i) {
      auto& dst = grads.dense[static_cast<size_t>(2 * i)].value;
      std::copy(dw + i * d * m, dw + (i + 1) * d * m, dst.begin());
    }
  grads.table = accumulate_row_grads<Scalar>(
      tape.rows_, std::span<const Scalar>(de, static_cast<size_t>(N * m)), L.r);
  if (tape.recompute()) a.valid = false;
}

}  // namespace engram::train
