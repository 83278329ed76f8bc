// N-gram hashing throughput on one core: token positions/s (items) and row ids/s (counter
// "row_ids"), for the V3-style shape (N=3, H=8, 646,400-row tables: 16 row ids per token) and
// the V4.1-style shape (N=4, H=8: 24 per token), both policies, King James Bible token ids.
//
//   Hash/<policy>/<N>        NgramHasherT::hash on [4, 4096] ids: compression + kernel
//   HashInt32/<policy>/<N>   the same with int32 ids
//   Reference/<policy>/<N>   hash_chunk_reference: the scalar spec (multiply-XOR and `%`)
//   Kernel/<path>/<N>        the policy kernel alone on compressed ids (no lookup)
//   Decode/<policy>/<N>      hash_chunk with T = 1 for 64 sequences (one decode step)
//   Masked/<policy>/<N>      hash with a live mask (a quarter of the tokens dead)
//
// Bytes: ids read + lookup entries read + row ids written (8 bytes each).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "engram/hashing/ngram_hasher.hpp"
#include "engram/hashing/xxh3_policy.hpp"
#include "engram/io/safetensors.hpp"
#include "support/test_data.hpp"

namespace {

using engram::EngramConfig;
using engram::NgramHasherT;
using engram::NgramHashState;

const std::vector<int64_t>& lookup() {
  static const std::vector<int64_t> l =
      engram::SafetensorsFile(engram::test::data_path("hashing/dsv3_lookup.safetensors"))
          .read_int64("lookup");
  return l;
}

const std::vector<int64_t>& corpus() {
  static const std::vector<int64_t> ids =
      engram::SafetensorsFile(engram::test::data_path("hashing/kjv_slice.safetensors"))
          .read_int64("input_ids");
  return ids;
}

EngramConfig bench_config(int64_t n) {
  EngramConfig c;
  c.max_ngram_size = n;
  c.n_head_per_ngram = 8;
  c.engram_vocab_size.assign(static_cast<size_t>(n - 1), 646400);  // 129280 * 5
  c.layer_ids = {1, 15};
  return c;
}

constexpr int64_t kBatch = 4, kSeqlen = 4096;

template <class Id>
std::vector<Id> batch_ids(int64_t count) {
  const auto& c = corpus();
  std::vector<Id> ids(static_cast<size_t>(count));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<Id>(c[i % c.size()]);
  return ids;
}

void set_counters(benchmark::State& state, int64_t tokens, int64_t columns, int64_t id_bytes) {
  const int64_t total = static_cast<int64_t>(state.iterations()) * tokens;
  state.SetItemsProcessed(total);
  state.SetBytesProcessed(total * (id_bytes + 8 + columns * 8));
  state.counters["row_ids"] =
      benchmark::Counter(static_cast<double>(total * columns), benchmark::Counter::kIsRate);
}

template <class Policy, class Id>
void BM_Hash(benchmark::State& state) {
  const EngramConfig config = bench_config(state.range(0));
  const NgramHasherT<Policy> h(config, lookup(), 15);
  const auto ids = batch_ids<Id>(kBatch * kSeqlen);
  std::vector<int64_t> out(static_cast<size_t>(kBatch * kSeqlen * h.num_columns()));
  for (auto _ : state) {
    h.hash(ids, kBatch, kSeqlen, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, kBatch * kSeqlen, h.num_columns(), sizeof(Id));
}

template <class Policy>
void BM_Masked(benchmark::State& state) {
  const EngramConfig config = bench_config(state.range(0));
  const NgramHasherT<Policy> h(config, lookup(), 15);
  const auto ids = batch_ids<int64_t>(kBatch * kSeqlen);
  std::vector<uint8_t> live(ids.size());
  for (size_t i = 0; i < live.size(); ++i) live[i] = i % 4 != 3;
  std::vector<int64_t> out(static_cast<size_t>(kBatch * kSeqlen * h.num_columns()));
  for (auto _ : state) {
    h.hash(ids, kBatch, kSeqlen, out, live);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, kBatch * kSeqlen, h.num_columns(), sizeof(int64_t) + 1);
}

template <class Policy>
void BM_Reference(benchmark::State& state) {
  const EngramConfig config = bench_config(state.range(0));
  const NgramHasherT<Policy> h(config, lookup(), 15);
  const int64_t seqlen = 1024;
  const auto ids = batch_ids<int64_t>(seqlen);
  std::vector<int64_t> out(static_cast<size_t>(seqlen * h.num_columns()));
  for (auto _ : state) {
    std::vector<NgramHashState> states(1, h.initial_state());
    h.hash_chunk_reference(ids, 1, seqlen, out, states);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, seqlen, h.num_columns(), sizeof(int64_t));
}

template <class Policy>
void BM_Decode(benchmark::State& state) {
  const EngramConfig config = bench_config(state.range(0));
  const NgramHasherT<Policy> h(config, lookup(), 15);
  const int64_t sequences = 64;
  std::vector<NgramHashState> states(static_cast<size_t>(sequences), h.initial_state());
  const auto all = batch_ids<int64_t>(sequences * 1024);
  std::vector<int64_t> out(static_cast<size_t>(sequences * h.num_columns()));
  size_t step = 0;
  for (auto _ : state) {
    const std::span<const int64_t> ids(all.data() + (step++ % 1024) * sequences, sequences);
    h.hash_chunk(ids, sequences, 1, out, states);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, sequences, h.num_columns(), sizeof(int64_t));
}

/// The kernel alone: compressed ids in, row ids out.
enum class Path { kDispatch, kScalar, kReference };

template <class Policy, Path path>
void BM_Kernel(benchmark::State& state) {
  const EngramConfig config = bench_config(state.range(0));
  const NgramHasherT<Policy> h(config, lookup(), 15);
  const int64_t count = 4096, lookback = h.max_ngram_size() - 1;
  const auto raw = batch_ids<int64_t>(count + lookback);
  std::vector<int64_t> window(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) window[i] = lookup()[static_cast<size_t>(raw[i])];
  std::vector<int64_t> out(static_cast<size_t>(count * h.num_columns()));
  const int64_t* x = window.data() + lookback;
  for (auto _ : state) {
    if constexpr (path == Path::kDispatch)
      h.policy().hash_rows(x, count, out.data());
    else if constexpr (path == Path::kScalar)
      h.policy().hash_rows_scalar(x, count, out.data());
    else
      h.policy().hash_rows_reference(x, count, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, count, h.num_columns(), 0);
}

using engram::NumpyMultiplyXor;
using engram::Xxh3Hash;

#define ENGRAM_SHAPES ->Arg(3)->Arg(4)

BENCHMARK(BM_Hash<NumpyMultiplyXor, int64_t>)->Name("Hash/numpy_multiply_xor") ENGRAM_SHAPES;
BENCHMARK(BM_Hash<Xxh3Hash, int64_t>)->Name("Hash/xxh3") ENGRAM_SHAPES;
BENCHMARK(BM_Hash<NumpyMultiplyXor, int32_t>)->Name("HashInt32/numpy_multiply_xor") ENGRAM_SHAPES;
BENCHMARK(BM_Hash<Xxh3Hash, int32_t>)->Name("HashInt32/xxh3") ENGRAM_SHAPES;
BENCHMARK(BM_Masked<NumpyMultiplyXor>)->Name("Masked/numpy_multiply_xor") ENGRAM_SHAPES;
BENCHMARK(BM_Masked<Xxh3Hash>)->Name("Masked/xxh3") ENGRAM_SHAPES;
BENCHMARK(BM_Reference<NumpyMultiplyXor>)->Name("Reference/numpy_multiply_xor") ENGRAM_SHAPES;
BENCHMARK(BM_Reference<Xxh3Hash>)->Name("Reference/xxh3") ENGRAM_SHAPES;
BENCHMARK(BM_Decode<NumpyMultiplyXor>)->Name("Decode/numpy_multiply_xor") ENGRAM_SHAPES;
BENCHMARK(BM_Decode<Xxh3Hash>)->Name("Decode/xxh3") ENGRAM_SHAPES;
BENCHMARK(BM_Kernel<NumpyMultiplyXor, Path::kDispatch>)
    ->Name(ENGRAM_HASHING_HAVE_AVX512 ? "Kernel/numpy_multiply_xor_avx512"
                                      : "Kernel/numpy_multiply_xor_scalar") ENGRAM_SHAPES;
BENCHMARK(BM_Kernel<NumpyMultiplyXor, Path::kScalar>)
    ->Name("Kernel/numpy_multiply_xor_scalar_fastmod") ENGRAM_SHAPES;
BENCHMARK(BM_Kernel<NumpyMultiplyXor, Path::kReference>)
    ->Name("Kernel/numpy_multiply_xor_reference_percent") ENGRAM_SHAPES;
BENCHMARK(BM_Kernel<Xxh3Hash, Path::kDispatch>)->Name("Kernel/xxh3_fastmod") ENGRAM_SHAPES;
BENCHMARK(BM_Kernel<Xxh3Hash, Path::kReference>)
    ->Name("Kernel/xxh3_reference_percent") ENGRAM_SHAPES;

}  // namespace
