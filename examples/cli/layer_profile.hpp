// layer_profile.hpp: `engram bench`'s split of a forward into its parts and its roofline columns.
//
// The split is measured from the outside, each part as the median of `reps` timed calls over the
// same batch:
//   hash        forward_tokens - forward(hash ids)          (token ids -> row ids)
//   gather      forward(hash ids) - forward_memory(e)       (rows read and decoded)
//   projection  projection().forward(e)                     (the stacked keys + value GEMM)
//   per-token   forward_memory(e) - projection              (gate, value, conv, finite checks)
// Differences of medians can come out slightly negative on a noisy machine; they are printed as
// measured. Roofline: achieved GFLOP/s (the projection's 2 * in * out FLOP a token) and GB/s (the
// projection's weights once a call, the gathered rows, hidden read and output written) as
// fractions of `engram probe`'s figures for this machine.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "cli/probe.hpp"

namespace engram::example {

/// Median wall time of `reps` calls of fn (after one untimed warm-up call).
inline double median_seconds(int reps, const std::function<void()>& fn) {
  fn();
  std::vector<double> s;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

/// The layer's stacked projection [out, in]: kv = e W^T, whichever weights it holds (the fused
/// layer's FP8 wkv, else its AnyLinear).
struct ProjectionShape {
  int64_t in = 0, out = 0;
};

template <class Layer>
bool uses_fp8_projection(const Layer& layer) {
  if constexpr (requires { layer.has_fp8_projection(); }) return layer.has_fp8_projection();
  return false;
}

template <class Layer>
ProjectionShape projection_shape(const Layer& layer) {
  if constexpr (requires { layer.fp8_projection(); }) {
    if (uses_fp8_projection(layer))
      return {layer.fp8_projection().in_features(), layer.fp8_projection().out_features()};
  }
  return {layer.projection().in_features(), layer.projection().out_features()};
}

template <class Layer>
void project(const Layer& layer, const float* e, int64_t tokens, float* kv) {
  if constexpr (requires { layer.fp8_projection(); }) {
    if (uses_fp8_projection(layer)) return layer.fp8_projection().forward(e, tokens, kv);
  }
  layer.projection().forward(e, tokens, kv, false);
}

/// Seconds of each part of a forward over [batch, seqlen] tokens (see the banner).
struct LayerProfile {
  double total = 0, hash = 0, gather = 0, projection = 0, per_token = 0;
};

template <class Layer>
LayerProfile profile_layer(const Layer& layer, std::span<const int64_t> ids,
                           std::span<const float> hidden, int64_t batch, int64_t seqlen, int reps) {
  const int64_t tokens = batch * seqlen;
  const ProjectionShape projection = projection_shape(layer);
  std::vector<float> out(hidden.size());
  std::vector<int64_t> hash_ids(static_cast<size_t>(tokens * layer.num_columns()));
  layer.hash_tokens(ids, batch, seqlen, hash_ids);
  // The memory's values do not change the work; finite values keep the layer's checks quiet.
  std::vector<float> memory(static_cast<size_t>(tokens * projection.in));
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& v : memory) v = normal(rng);
  std::vector<float> kv(static_cast<size_t>(tokens * projection.out));
  typename Layer::Workspace ws;

  LayerProfile p;
  p.total =
      median_seconds(reps, [&] { layer.forward_tokens(ids, hidden, batch, seqlen, out, ws); });
  const double from_ids =
      median_seconds(reps, [&] { layer.forward(hash_ids, hidden, batch, seqlen, out, ws); });
  const double from_memory =
      median_seconds(reps, [&] { layer.forward_memory(memory, hidden, batch, seqlen, out, ws); });
  p.projection = median_seconds(reps, [&] { project(layer, memory.data(), tokens, kv.data()); });
  p.hash = p.total - from_ids;
  p.gather = from_ids - from_memory;
  p.per_token = from_memory - p.projection;
  return p;
}

inline void print_profile(const LayerProfile& p, int64_t tokens) {
  auto part = [&](const char* name, double s) {
    std::printf("  %-11s %9.3f ms  %5.1f%%\n", name, s * 1e3, 100.0 * s / p.total);
  };
  std::printf("profile (%lld tokens, medians):\n", static_cast<long long>(tokens));
  part("hash", p.hash);
  part("gather", p.gather);
  part("projection", p.projection);
  part("per-token", p.per_token);
  part("total", p.total);
  std::printf("non-GEMM share %.1f%% (hash + gather + per-token passes)\n",
              100.0 * (p.total - p.projection) / p.total);
}

/// The work of one forward over `tokens` tokens, for the roofline columns.
struct ForwardWork {
  double flop = 0;   ///< the projection's multiply-adds x 2
  double bytes = 0;  ///< projection weights once + gathered rows + hidden in + output out
};

/// GFLOP/s and GB/s of a forward that took `seconds`, and their fractions of the probe's limits;
/// `native_bf16` compares against the bf16 dot peak instead of the f32 FMA peak.
inline void print_roofline(const ForwardWork& w, double seconds, const probe::Limits& limits,
                           bool native_bf16) {
  const double gflops = w.flop / seconds * 1e-9, gbps = w.bytes / seconds * 1e-9;
  const double peak = native_bf16 ? limits.bf16_gflops_all : limits.fma_gflops_all;
  std::printf(
      "achieved %.1f GFLOP/s (%.0f%% of the probe's %s peak %.1f), %.2f GB/s (%.0f%% of "
      "its read bandwidth %.2f)\n",
      gflops, peak > 0 ? 100.0 * gflops / peak : 0.0, native_bf16 ? "bf16 dot" : "f32 FMA", peak,
      gbps, limits.read_gbps > 0 ? 100.0 * gbps / limits.read_gbps : 0.0, limits.read_gbps);
}

}  // namespace engram::example
