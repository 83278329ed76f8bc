// engram/train/tape.hpp: what a training forward keeps for its backward.
//
// A TapeT holds the forward's inputs (hidden [B, T, hc, d], the global table rows [B, T, cols]
// with -1 for dead tokens, the live mask) and its activations, in an ActivationsT workspace:
//   e [N, m] gathered memory, kv [N, (hc + 1) * d] projections (bias added), per token and branch
//   the inverse RMS factors, the scaled dot s and the gate a; demo also y, xn, z [N, hc * d]
//   (gated value, conv-normed input, conv output); plus backward scratch (N = B * T tokens).
// Two modes:
//   TapeT tape;                  // saves: the activations live in the tape's own workspace
//   TapeT tape(shared);          // recompute: the tape keeps only the inputs; forward and backward
//                                // compute in `shared` (one ActivationsT for many layers'
//                                // tapes), and backward recomputes the forward before using it
// Reuse: buffers only grow, so a tape (or workspace) reused for same-sized batches does not
// allocate (the SparseRowGrad a backward returns is new storage). The parameters must not change
// between a forward and its backward. Thread safety: one tape per concurrent forward/backward; a
// shared workspace serves one call at a time.
#pragma once

#include <cstdint>
#include <vector>

namespace engram::train {

/// Activations and backward scratch of one forward/backward (see the banner).
template <class Scalar = float>
struct ActivationsT {
  std::vector<Scalar> memory;      ///< e [N, m]
  std::vector<Scalar> kv;          ///< [N, (hc + 1) * d]
  std::vector<Scalar> inv_rms_a;   ///< demo: key norm; fused: hidden  [N, hc]
  std::vector<Scalar> inv_rms_b;   ///< demo: query norm; fused: key   [N, hc]
  std::vector<Scalar> inv_rms_c;   ///< demo: conv norm                 [N, hc]
  std::vector<Scalar> dot;         ///< fused: raw dot [N, hc]
  std::vector<Scalar> scaled_dot;  ///< s [N, hc]
  std::vector<Scalar> gate;        ///< a [N, hc]
  std::vector<Scalar> y;           ///< demo: [N, hc * d]
  std::vector<Scalar> conv_in;     ///< demo: xn [N, hc * d]
  std::vector<Scalar> conv_out;    ///< demo: z [N, hc * d]
  // backward scratch
  std::vector<Scalar> stacked_weight;  ///< demo: keys + value projection [(hc + 1) * d, m]
  std::vector<Scalar> stacked_bias;    ///< demo: [(hc + 1) * d]
  std::vector<Scalar> grad_weight;     ///< demo: stacked projection gradient
  std::vector<Scalar> grad_kv;         ///< [N, (hc + 1) * d]
  std::vector<Scalar> grad_memory;     ///< [N, m]
  std::vector<Scalar> scratch_a, scratch_b, scratch_c, scratch_d;  ///< [N, hc * d] each
  bool valid = false;  ///< holds the activations of the tape's forward
};
using Activations = ActivationsT<float>;

/// Saved inputs of a training forward, and its activations (own, or a shared recompute workspace).
template <class Scalar = float>
class TapeT {
 public:
  /// Save mode: activations kept in the tape.
  TapeT() = default;
  /// Recompute mode: only inputs kept; `shared` (must outlive the tape) is the workspace.
  explicit TapeT(ActivationsT<Scalar>& shared) : shared_(&shared) {}
  TapeT(const TapeT&) = delete;
  TapeT& operator=(const TapeT&) = delete;
  TapeT(TapeT&&) noexcept = default;
  TapeT& operator=(TapeT&&) noexcept = default;

  bool recompute() const noexcept { return shared_ != nullptr; }
  int64_t batch() const noexcept { return batch_; }
  int64_t seq_len() const noexcept { return seq_len_; }
  int64_t tokens() const noexcept { return batch_ * seq_len_; }
  /// True after a forward, until the next forward.
  bool recorded() const noexcept { return recorded_; }
  /// Bytes held by the tape itself (inputs, and activations in save mode).
  size_t bytes() const noexcept {
    size_t n =
        hidden_.capacity() * sizeof(Scalar) + rows_.capacity() * sizeof(int64_t) + live_.capacity();
    if (!shared_) {
      const ActivationsT<Scalar>& a = own_;
      for (const auto* v : {&a.memory,       &a.kv,         &a.inv_rms_a,
                            &a.inv_rms_b,    &a.inv_rms_c,  &a.dot,
                            &a.scaled_dot,   &a.gate,       &a.y,
                            &a.conv_in,      &a.conv_out,   &a.grad_kv,
                            &a.grad_memory,  &a.scratch_a,  &a.scratch_b,
                            &a.scratch_c,    &a.scratch_d,  &a.stacked_weight,
                            &a.stacked_bias, &a.grad_weight})
        n += v->capacity() * sizeof(Scalar);
    }
    return n;
  }

  // Internals of forward/backward (backward.hpp).
  ActivationsT<Scalar>& activations() noexcept { return shared_ ? *shared_ : own_; }
  std::vector<Scalar> hidden_;  ///< [N, hc, d]
  std::vector<int64_t> rows_;   ///< [N, cols] global rows, -1 for dead tokens
  std::vector<uint8_t> live_;   ///< [N] or empty
  int64_t batch_ = 0, seq_len_ = 0;
  bool recorded_ = false;

 private:
  ActivationsT<Scalar> own_;
  ActivationsT<Scalar>* shared_ = nullptr;
};
using Tape = TapeT<float>;

}  // namespace engram::train
