// Table optimiser steps: rows updated per second, and a sparse step's cost against table size.
//
// BM_TableStep<Optimizer>/rows/touched/threads: one step() of a fixed SparseRowGrad of `touched`
// distinct rows spread over a table of `rows` x 16 f32 (64 B rows; state as the optimiser keeps
// it). Tables and state are RowStorages, so a 10^8-row table (6.4 GB of address space, 19 GB
// with SparseAdam's moments) costs memory only for the pages the touched rows land on: the sweep
// 10^5 .. 10^8 at a fixed touched count shows the step costs O(touched), not O(rows) (the larger
// tables add a TLB and cache miss per row, not a pass over the table).
// BM_DenseAdamW/numel/threads: AdamW over a dense parameter, for comparison (elements/s).
// Counters: items = rows (elements) updated; bytes = bytes the step reads and writes (weights,
// gradient, state). The gradient's deduplication (accumulate_row_grads) is timed separately in
// BM_AccumulateRowGrads (ids of a 4096-token x 16-column batch).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "engram/train/optimizers.hpp"
#include "engram/train/sparse_grad.hpp"
#include "engram/train/trainable_table.hpp"

namespace engram::train {
namespace {

constexpr int64_t kDim = 16;

/// `touched` distinct rows spread evenly (multiplicative hash, then sorted) over [0, rows).
SparseRowGrad spread_grad(int64_t rows, int64_t touched) {
  std::vector<int64_t> ids(static_cast<size_t>(touched));
  for (int64_t i = 0; i < touched; ++i)
    ids[i] = static_cast<int64_t>((static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull) %
                                  static_cast<uint64_t>(rows));
  std::vector<float> grads(ids.size() * kDim);
  for (size_t i = 0; i < grads.size(); ++i) grads[i] = static_cast<float>(i % 13) * 1e-3f - 6e-3f;
  return accumulate_row_grads<float>(ids, grads, kDim);
}

template <class Optimizer, class Options>
void BM_TableStep(benchmark::State& state) {
  const int64_t rows = state.range(0), touched = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  TrainableTable table(rows, kDim);
  Options options;
  options.threads = threads;
  Optimizer optimizer(options, rows, kDim);
  const SparseRowGrad grad = spread_grad(rows, touched);
  optimizer.step(table, grad);  // first touch of the pages outside the timing
  for (auto _ : state) {
    optimizer.step(table, grad);
    benchmark::DoNotOptimize(table.weights().data());
  }
  const int64_t state_floats =
      static_cast<int64_t>(optimizer.state().slots.size()) *
      (optimizer.state().slots.empty() ? 0 : optimizer.state().slots[0].values.size() / rows);
  state.SetItemsProcessed(state.iterations() * grad.size());
  state.SetBytesProcessed(state.iterations() * grad.size() * static_cast<int64_t>(sizeof(float)) *
                          (3 * kDim + 2 * state_floats));
  state.counters["distinct"] = static_cast<double>(grad.size());
}

void table_sweep(benchmark::internal::Benchmark* b) {
  for (int64_t rows : {100'000LL, 1'000'000LL, 10'000'000LL, 100'000'000LL})
    for (int threads : {1, 2}) b->Args({rows, 16384, threads});
  b->Args({1'000'000, 1024, 1})->Args({1'000'000, 131072, 1});
}

BENCHMARK_TEMPLATE(BM_TableStep, SparseSgd, SgdOptions)->Apply(table_sweep);
BENCHMARK_TEMPLATE(BM_TableStep, RowwiseAdagrad, RowwiseAdagradOptions)->Apply(table_sweep);
BENCHMARK_TEMPLATE(BM_TableStep, SparseAdam, SparseAdamOptions)->Apply(table_sweep);

void BM_DenseAdamW(benchmark::State& state) {
  const int64_t numel = state.range(0);
  std::vector<float> param(static_cast<size_t>(numel), 0.5f), grad(param.size(), 1e-3f);
  DenseAdamW adamw({.threads = static_cast<int>(state.range(1))}, {numel});
  for (auto _ : state) {
    adamw.step(param, grad);
    benchmark::DoNotOptimize(param.data());
  }
  state.SetItemsProcessed(state.iterations() * numel);
  state.SetBytesProcessed(state.iterations() * numel * static_cast<int64_t>(sizeof(float)) * 7);
}
BENCHMARK(BM_DenseAdamW)->Args({1 << 20, 1})->Args({1 << 20, 2});

void BM_AccumulateRowGrads(benchmark::State& state) {
  const int64_t tokens = 4096 * 16;
  std::vector<int64_t> ids(static_cast<size_t>(tokens));
  for (int64_t i = 0; i < tokens; ++i) ids[i] = (i * 7919) % (tokens / 2);  // two hits per row
  const std::vector<float> grads(ids.size() * kDim, 1e-3f);
  for (auto _ : state) benchmark::DoNotOptimize(accumulate_row_grads<float>(ids, grads, kDim));
  state.SetItemsProcessed(state.iterations() * tokens);
}
BENCHMARK(BM_AccumulateRowGrads);

}  // namespace
}  // namespace engram::train
