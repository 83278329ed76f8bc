// Fp8BlockLinear at DeepSeek-V4.1-Flash's wkv shape [25600, 6144] (157 MB of E4M3 weights, random
// finite codes, scales near 2^-7), rows 1 (decode: one pass over the weights), 32 (batched decode)
// and 2048 (prefill), for each ISA path this machine has (second argument: 0 scalar, 1 avx2,
// 2 avx512, 3 avx512bf16; the scalar path runs only at rows 1; third: the kernel at avx512bf16,
// 1 vdpbf16ps, 2 f32 FMA, see bf16_dot()).
// Counters: items = rows; bytes = weights + scales + x + y per call (GB/s: the decode figure to set
// beside the machine's read bandwidth); GFLOP/s = 2 x rows x out x in per second. Threads: OpenMP's
// default (OMP_NUM_THREADS).
// BM_StreamRead reads as many bytes once: the GB/s to set a decode step's GB/s beside, measured
// under the same load.
// Example: fp8_linear_bench --benchmark_filter='Fp8BlockLinear/1/' --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "engram/nn/fp8_linear.hpp"

namespace engram {
namespace {

constexpr int64_t kOut = 25600, kIn = 6144;

const Fp8BlockLinear& wkv() {
  static const Fp8BlockLinear layer = [] {
    std::mt19937 rng(41);
    std::uniform_int_distribution<int> code(0, 255), scale(118, 122);
    std::vector<std::uint8_t> codes(static_cast<size_t>(kOut * kIn));
    for (auto& c : codes) {
      c = static_cast<std::uint8_t>(code(rng));
      if ((c & 0x7F) == 0x7F) c = 0x38;
    }
    std::vector<std::uint8_t> scales(static_cast<size_t>((kOut / 32) * (kIn / 32)));
    for (auto& s : scales) s = static_cast<std::uint8_t>(scale(rng));
    return Fp8BlockLinear(codes, scales, kOut, kIn);
  }();
  return layer;
}

void BM_Fp8BlockLinear(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const auto isa = static_cast<Isa>(state.range(1));
  if (static_cast<int>(isa) > static_cast<int>(best_isa())) {
    state.SkipWithError("ISA not available on this machine");
    return;
  }
  const Fp8BlockLinear& layer = wkv();
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows * kIn)), y(static_cast<size_t>(rows * kOut));
  for (auto& v : x) v = normal(rng);
  quantize_activations_e4m3(x);
  const Isa old = set_isa_limit(isa);
  const Bf16Dot old_dot = set_bf16_dot(static_cast<Bf16Dot>(state.range(2)));
  for (auto _ : state) {
    layer.forward(x.data(), rows, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_isa_limit(old);
  set_bf16_dot(old_dot);
  const bool bf16_dot =
      isa == Isa::kAvx512Bf16 && state.range(2) == static_cast<int>(Bf16Dot::kBf16);
  state.SetLabel(std::string(isa_name(isa)) + (bf16_dot ? " vdpbf16ps" : " f32 FMA"));
  state.SetItemsProcessed(state.iterations() * rows);
  state.SetBytesProcessed(state.iterations() *
                          (kOut * kIn + (kOut / 32) * (kIn / 32) + 4 * rows * (kIn + kOut)));
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(rows * kOut * kIn) * static_cast<double>(state.iterations()) * 1e-9,
      benchmark::Counter::kIsRate);
}

// The machine's own limit under the same load: one pass reading a buffer of the weights' size
// (157 MB; 64-bit XOR in 8 independent lanes; OpenMP threads split it as forward splits panels).
void BM_StreamRead(benchmark::State& state) {
  static const std::vector<std::uint64_t> buffer(static_cast<size_t>(kOut * kIn / 8), 0x5A);
  const auto n = static_cast<int64_t>(buffer.size());
  std::uint64_t sink = 0;
  for (auto _ : state) {
    std::vector<std::uint64_t> sums(static_cast<size_t>(detail::kernel_threads()));  // per worker
    detail::parallel_for(n / 8, 1, [&](int64_t begin, int64_t end, int worker) {
      std::uint64_t lane[8] = {};
      for (int64_t i = begin * 8; i < end * 8; i += 8)
        for (int k = 0; k < 8; ++k) lane[k] ^= buffer[static_cast<size_t>(i + k)];
      for (int k = 0; k < 8; ++k) sums[static_cast<size_t>(worker)] ^= lane[k];
    });
    for (const std::uint64_t s : sums) sink ^= s;
    benchmark::DoNotOptimize(sink);
  }
  state.SetBytesProcessed(state.iterations() * kOut * kIn);
}
BENCHMARK(BM_StreamRead)->UseRealTime()->Unit(benchmark::kMillisecond);

void fp8_args(benchmark::internal::Benchmark* b) {
  b->Args({1, 0, 0});
  for (const int64_t rows : {1, 32, 2048}) {
    for (const int64_t isa : {1, 2, 3}) b->Args({rows, isa, 2});
    b->Args({rows, 3, 1});  // vdpbf16ps at avx512bf16
  }
}
BENCHMARK(BM_Fp8BlockLinear)
    ->Apply(fp8_args)
    ->ArgNames({"rows", "isa", "dot"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace engram
