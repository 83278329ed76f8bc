// Training forward vs forward + backward on the paper-demo layer shape (bench/configs/
// paper_demo.json: d = 1024, hc = 4, N = 3, H = 8, row_dim = 64, kernel 4), T = 2048 tokens.
// The table has 16 columns of 10007 rows (the shapes of every dense step are the paper's; only the
// table is smaller, so that its f32 copy fits a loaded machine: the gather touches at most
// T * 16 rows either way). Target (issue 17): forward + backward at most 3.5x the forward, i.e.
// a backward at most 2.5x a forward. Items: tokens.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <random>
#include <vector>

#include "engram/train/backward.hpp"

namespace {

using engram::train::ParamsT;

engram::EngramConfig paper_demo() {
  engram::EngramConfig c;
  c.engram_vocab_size = {646400, 646400};
  c.max_ngram_size = 3;
  c.n_embed_per_ngram = 512;
  c.n_head_per_ngram = 8;
  c.layer_ids = {1, 15};
  c.kernel_size = 4;
  c.hidden_size = 1024;
  c.hc_mult = 4;
  return c;
}

struct Setup {
  ParamsT<float> params;
  std::vector<int64_t> hash_ids;
  std::vector<float> hidden, grad_output, out;
  int64_t seq_len = 0;
};

const Setup& setup(int64_t seq_len) {
  static Setup s;
  if (s.seq_len == seq_len) return s;
  s = Setup{};
  s.seq_len = seq_len;
  const engram::EngramConfig config = paper_demo();
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto& p = s.params;
  p.config = config;
  p.dense = engram::train::zero_dense<float>(config);
  for (auto& t : p.dense) {
    const bool gain = t.name.find("norm") != std::string::npos;
    for (auto& v : t.value) v = gain ? 1.0f + 0.1f * normal(rng) : 0.02f * normal(rng);
  }
  const int64_t cols = config.num_columns(), rows = 10007;
  for (int64_t k = 0; k < cols; ++k) {
    p.column_rows.push_back(rows);
    p.column_offsets.push_back(k * rows);
  }
  p.table_rows = cols * rows;
  p.table.resize(static_cast<size_t>(p.table_rows * config.row_dim()));
  for (auto& v : p.table) v = normal(rng);
  s.hash_ids.resize(static_cast<size_t>(seq_len * cols));
  for (auto& id : s.hash_ids) id = static_cast<int64_t>(rng() % rows);
  const int64_t width = config.hc_mult * config.hidden_size;
  s.hidden.resize(static_cast<size_t>(seq_len * width));
  s.grad_output.resize(s.hidden.size());
  s.out.resize(s.hidden.size());
  for (auto& v : s.hidden) v = normal(rng);
  for (auto& v : s.grad_output) v = normal(rng);
  return s;
}

void BM_TrainForward(benchmark::State& state) {
  const Setup& s = setup(state.range(0));
  std::vector<float> out(s.out.size());
  engram::train::Tape tape;
  for (auto _ : state) {
    engram::train::forward(s.params, s.hash_ids, std::span<const float>(s.hidden), 1, s.seq_len,
                           std::span<float>(out), tape);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * s.seq_len);
  state.counters["threads"] = Eigen::nbThreads();
}
BENCHMARK(BM_TrainForward)->ArgName("T")->Arg(2048)->Unit(benchmark::kMillisecond);

// recompute = 1: the tape keeps only the inputs and the backward reruns the forward.
void BM_TrainForwardBackward(benchmark::State& state) {
  const Setup& s = setup(state.range(0));
  std::vector<float> out(s.out.size());
  engram::train::Activations shared;
  engram::train::Tape saving, recomputing(shared);
  engram::train::Tape& tape = state.range(1) ? recomputing : saving;
  engram::train::Grads grads;
  for (auto _ : state) {
    engram::train::forward(s.params, s.hash_ids, std::span<const float>(s.hidden), 1, s.seq_len,
                           std::span<float>(out), tape);
    engram::train::backward(s.params, std::span<const float>(s.grad_output), tape, grads);
    benchmark::DoNotOptimize(grads.hidden.data());
  }
  state.SetItemsProcessed(state.iterations() * s.seq_len);
  state.counters["rows_touched"] = static_cast<double>(grads.table.size());
  state.counters["tape_MiB"] = static_cast<double>(tape.bytes()) / (1 << 20);
}
BENCHMARK(BM_TrainForwardBackward)
    ->ArgNames({"T", "recompute"})
    ->Args({2048, 0})
    ->Args({2048, 1})
    ->Unit(benchmark::kMillisecond);

}  // namespace
