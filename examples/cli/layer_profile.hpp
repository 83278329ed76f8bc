// layer_profile.hpp: `engram bench`'s split of a forward into its parts and its roofline columns.
//
// Each part is timed on its own, the parts interleaved call by call (so that a load that comes and
// goes on the machine hits them alike), medians of `reps`:
//   hash        hash_tokens (token-id checks, token ids -> per-column ids)
//   gather      id checks, rows read and decoded, their finite check (as the layer runs them)
//   projection  the stacked keys + value GEMM
//   per-token   the block's step (bias, gate, value, conv; kv restored before each call; with
//               the demo block also the hidden states' finite check, made by its gate)
//   checks      the layer's own finite check of the hidden states (blocks without kChecksHidden)
//   other       total - the parts above (setup, dispatch), so that the parts add up to total
//   total       forward_tokens
// `other` can come out slightly negative on a noisy machine; it is printed as measured. Roofline:
// achieved GFLOP/s (the projection's 2 * in * out FLOP a token) and GB/s (the projection's weights
// once a call, the gathered rows, hidden read and output written) as fractions of `engram probe`'s
// figures for this machine.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "cli/probe.hpp"
#include "engram/layer/blocks/block.hpp"
#include "engram/layer/detail/layer_common.hpp"

namespace engram::example {

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
  double total = 0, hash = 0, gather = 0, projection = 0, per_token = 0, checks = 0, other = 0;
};

inline double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class Layer>
LayerProfile profile_layer(const Layer& layer, std::span<const int64_t> ids,
                           std::span<const float> hidden, int64_t batch, int64_t seqlen, int reps) {
  const int64_t tokens = batch * seqlen;
  const ProjectionShape projection = projection_shape(layer);
  std::vector<float> out(hidden.size());
  std::vector<int64_t> hash_ids(static_cast<size_t>(tokens * layer.num_columns()));
  // The memory's values do not change the work; finite values keep the layer's checks quiet.
  std::vector<float> memory(static_cast<size_t>(tokens * projection.in));
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& v : memory) v = normal(rng);
  std::vector<float> kv(static_cast<size_t>(tokens * projection.out));
  project(layer, memory.data(), tokens, kv.data());
  const std::vector<float> projected = kv;
  std::vector<float> scratch(static_cast<size_t>(layer.step().scratch_size(tokens)));
  std::vector<int64_t> token_segment(static_cast<size_t>(tokens)), segment_start(batch);
  for (int64_t t = 0; t < tokens; ++t) token_segment[t] = t / seqlen;
  for (int64_t s = 0; s < batch; ++s) segment_start[s] = s * seqlen;
  const BlockBatch<float> block{kv.data(), hidden.data(),        out.data(),           tokens,
                                nullptr,   token_segment.data(), segment_start.data(), batch,
                                {},        scratch.data()};
  typename Layer::Workspace ws;
  const auto segments = detail::uniform_segments("bench", batch, seqlen);
  std::vector<float> gathered(memory.size());

  using Clock = std::chrono::steady_clock;
  const auto seconds = [](const auto& fn) {
    const auto t0 = Clock::now();
    fn();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  std::vector<double> total, hash, gather, proj, per_token, checks;
  for (int r = -1; r < reps; ++r) {  // r = -1: warm-up
    const double t_total =
        seconds([&] { layer.forward_tokens(ids, hidden, batch, seqlen, out, ws); });
    const double t_hash = seconds([&] { layer.hash_tokens(ids, batch, seqlen, hash_ids); });
    const double t_gather = seconds([&] { layer.gather(hash_ids, batch, seqlen, gathered, ws); });
    const double t_proj = seconds([&] { project(layer, memory.data(), tokens, kv.data()); });
    std::copy(projected.begin(), projected.end(), kv.begin());
    const double t_step = seconds([&] { (void)layer.step().forward(block); });
    // A block that checks the hidden states in its step has no separate check (kChecksHidden).
    const double t_checks = seconds([&] {
      if constexpr (!Layer::BlockType::kChecksHidden)
        detail::check_finite_hidden("bench", hidden.data(), segments, layer.hc_mult(),
                                    layer.hidden_size(), nullptr);
    });
    if (r < 0) continue;
    total.push_back(t_total);
    hash.push_back(t_hash);
    gather.push_back(t_gather);
    proj.push_back(t_proj);
    per_token.push_back(t_step);
    checks.push_back(t_checks);
  }
  LayerProfile p{median_of(total), median_of(hash),      median_of(gather),
                 median_of(proj),  median_of(per_token), median_of(checks)};
  p.other = p.total - p.hash - p.gather - p.projection - p.per_token - p.checks;
  return p;
}

inline void print_profile(const LayerProfile& p, int64_t tokens) {
  auto part = [&](const char* name, double s) {
    std::printf("  %-11s %9.3f ms  %5.1f%%\n", name, s * 1e3, 100.0 * s / p.total);
  };
  std::printf("profile (%lld tokens, medians of interleaved calls):\n",
              static_cast<long long>(tokens));
  part("hash", p.hash);
  part("gather", p.gather);
  part("projection", p.projection);
  part("per-token", p.per_token);
  part("checks", p.checks);
  part("other", p.other);
  part("total", p.total);
  const double non_gemm = p.hash + p.gather + p.per_token + p.checks;
  std::printf("non-GEMM share %.1f%% (hash + gather + per-token + checks over them + projection)\n",
              100.0 * non_gemm / (non_gemm + p.projection));
  std::printf("beyond the projection %.1f%% of the forward (1 - projection / total)\n",
              100.0 * (1.0 - p.projection / p.total));
}

/// The work of one forward over `tokens` tokens, for the roofline columns.
struct ForwardWork {
  double flop = 0;   ///< the projection's multiply-adds x 2
  double bytes = 0;  ///< projection weights once + gathered rows + hidden in + output out
};

/// GFLOP/s and GB/s of a forward that took `seconds`, and their fractions of the probe's limits;
/// `on_vdpbf16ps` compares against the bf16 dot peak instead of the f32 FMA peak.
inline void print_roofline(const ForwardWork& w, double seconds, const probe::Limits& limits,
                           bool on_vdpbf16ps) {
  const double gflops = w.flop / seconds * 1e-9, gbps = w.bytes / seconds * 1e-9;
  const double peak = on_vdpbf16ps ? limits.bf16_gflops_all : limits.fma_gflops_all;
  std::printf(
      "achieved %.1f GFLOP/s (%.0f%% of the probe's %s peak %.1f), %.2f GB/s (%.0f%% of "
      "its read bandwidth %.2f)\n",
      gflops, peak > 0 ? 100.0 * gflops / peak : 0.0, on_vdpbf16ps ? "bf16 dot" : "f32 FMA", peak,
      gbps, limits.read_gbps > 0 ? 100.0 * gbps / limits.read_gbps : 0.0, limits.read_gbps);
}

}  // namespace engram::example
