// The stacked projection (paper-demo layer: W [5120, 1024], y = x W^T) in engram's LinearT against
// oneDNN's matmul (libdnnl, the library behind PyTorch's CPU matmul), f32 and bf16, at the token
// counts of decode (T = 1, B = 32: T = 32) and prefill (T = 2048).
//   engram/f32          LinearT<float>: f32 weights and activations
//   engram/bf16w        LinearT<float, BFloat16>: bf16 weights widened exactly, f32 activations
//   onednn/f32          dnnl matmul, f32 src/weights/dst
//   onednn/bf16         dnnl matmul, bf16 src and weights (x rounded), f32 dst (PyTorch's bf16
//   mode)
// Weights are prepared once (oneDNN: reordered into its preferred blocked layout outside the timed
// loop, as a model load would). Counters: GFLOP/s and weight GB/s (the bytes of W streamed per
// call).
//   build/bench/nn_onednn_compare_bench --benchmark_filter='T:2048'
#include <benchmark/benchmark.h>

#include <omp.h>
#include <Eigen/Core>
#include <cstdint>
#include <dnnl.hpp>
#include <random>
#include <type_traits>
#include <vector>

#include "engram/detail/float16.hpp"
#include "engram/nn/linear.hpp"

namespace engram {
namespace {

constexpr int64_t kOut = 5 * 1024, kIn = 1024;  // (hc + 1) * d, memory_dim of the paper demo

const std::vector<float>& weights() {
  static const std::vector<float> w = [] {
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 0.03f);
    std::vector<float> v(static_cast<size_t>(kOut * kIn));
    for (auto& x : v) x = normal(rng);
    return v;
  }();
  return w;
}

std::vector<float> activations(int64_t rows) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(rows * kIn));
  for (auto& x : v) x = uniform(rng);
  return v;
}

void set_counters(benchmark::State& state, int64_t rows, double weight_bytes) {
  const double it = static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations() * rows);
  state.counters["GFLOP/s"] =
      benchmark::Counter(it * 2.0 * rows * kIn * kOut * 1e-9, benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] =
      benchmark::Counter(it * weight_bytes * 1e-9, benchmark::Counter::kIsRate);
}

/// Sets engram's kernel threads (Eigen::nbThreads) and OpenMP's (oneDNN's) for one benchmark.
struct ThreadScope {
  explicit ThreadScope(int threads) : saved(Eigen::nbThreads()), saved_omp(omp_get_max_threads()) {
    Eigen::setNbThreads(threads);
    omp_set_num_threads(threads);
  }
  ~ThreadScope() {
    Eigen::setNbThreads(saved);
    omp_set_num_threads(saved_omp);
  }
  int saved, saved_omp;
};

/// engram's LinearT with weights of type W (f32, or bf16 widened exactly). args: T, threads.
template <class W>
void engram_linear(benchmark::State& state) {
  const int64_t rows = state.range(0);
  ThreadScope threads(static_cast<int>(state.range(1)));
  std::vector<W> w(weights().size());
  if constexpr (std::is_same_v<W, float>) {
    w = weights();
  } else {
    detail::f32_to_bf16(weights().data(), w.data(), static_cast<int64_t>(w.size()));
  }
  const LinearT<float, W> linear(w, kOut, kIn);
  const auto x = activations(rows);
  std::vector<float> y(static_cast<size_t>(rows * kOut));
  for (auto _ : state) {
    linear.forward(x.data(), rows, y.data(), false);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, rows, static_cast<double>(sizeof(W)) * kOut * kIn);
}

void BM_EngramF32(benchmark::State& state) { engram_linear<float>(state); }
void BM_EngramBF16Weights(benchmark::State& state) { engram_linear<BFloat16>(state); }

/// oneDNN matmul y[T, out] = x[T, in] * W^T, W^T given as [in, out] with format "ba" (W's own
/// row-major [out, in] memory), reordered once into the primitive's preferred weight layout.
void onednn_matmul(benchmark::State& state, dnnl::memory::data_type type) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const int64_t rows = state.range(0);
  ThreadScope threads(static_cast<int>(state.range(1)));  // before the primitive is made
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const dnnl::memory::desc src_md({rows, kIn}, type, tag::ab);
  const dnnl::memory::desc wei_any({kIn, kOut}, type, tag::any);
  const dnnl::memory::desc dst_md({rows, kOut}, dt::f32, tag::ab);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_any, dst_md),
                                        engine);  // oneDNN 2.x
  const dnnl::matmul matmul(pd);

  auto x = activations(rows);
  std::vector<BFloat16> x16(x.size()), w16(weights().size());
  detail::f32_to_bf16(x.data(), x16.data(), static_cast<int64_t>(x.size()));
  detail::f32_to_bf16(weights().data(), w16.data(), static_cast<int64_t>(w16.size()));
  const bool bf16 = type == dt::bf16;
  dnnl::memory src(src_md, engine, bf16 ? static_cast<void*>(x16.data()) : x.data());
  dnnl::memory wei_user(
      {{kIn, kOut}, type, tag::ba}, engine,
      bf16 ? static_cast<void*>(w16.data()) : const_cast<float*>(weights().data()));
  dnnl::memory wei(pd.weights_desc(), engine);
  dnnl::reorder(wei_user, wei).execute(stream, wei_user, wei);
  std::vector<float> y(static_cast<size_t>(rows * kOut));
  dnnl::memory dst(dst_md, engine, y.data());
  stream.wait();
  for (auto _ : state) {
    matmul.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
    stream.wait();
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, rows, (bf16 ? 2.0 : 4.0) * kOut * kIn);
}

void BM_OneDnnF32(benchmark::State& state) { onednn_matmul(state, dnnl::memory::data_type::f32); }
void BM_OneDnnBF16(benchmark::State& state) { onednn_matmul(state, dnnl::memory::data_type::bf16); }

#define ENGRAM_PROJECTION_SHAPES(bench) \
  BENCHMARK(bench)                      \
      ->ArgNames({"T", "threads"})      \
      ->Args({1, 1})                    \
      ->Args({1, 2})                    \
      ->Args({32, 2})                   \
      ->Args({2048, 2})                 \
      ->Unit(benchmark::kMicrosecond)   \
      ->UseRealTime()

ENGRAM_PROJECTION_SHAPES(BM_EngramF32);
ENGRAM_PROJECTION_SHAPES(BM_EngramBF16Weights);
ENGRAM_PROJECTION_SHAPES(BM_OneDnnF32);
ENGRAM_PROJECTION_SHAPES(BM_OneDnnBF16);

}  // namespace
}  // namespace engram
