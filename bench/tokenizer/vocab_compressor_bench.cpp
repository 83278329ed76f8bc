// Building the compression table of the DeepSeek-V3 vocabulary (128,815 ids). Items = token ids;
// bytes = the tokenizer.json bytes read (compressed file for the end-to-end case).
//   BM_CompressTokenizerJson  file -> table (gunzip, JSON, validation, decode, normalise, dedup)
//   BM_ParseTokenizerJson     file -> TokenizerJson only
//   BM_CompressParsed         TokenizerJson -> table (decode every id, normalise, dedup)
//   BM_CompressDecodedTexts   decoded strings -> table, fast path vs the reference
#include <benchmark/benchmark.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engram/tokenizer/vocab_compressor.hpp"
#include "support/test_data.hpp"

namespace {

const std::string& deepseek_path() {
  static const std::string path =
      engram::test::data_path("tokenizer/deepseek_v3/tokenizer.json.gz");
  return path;
}

const engram::TokenizerJson& deepseek() {
  static const engram::TokenizerJson tokenizer = engram::read_tokenizer_json(deepseek_path());
  return tokenizer;
}

void BM_CompressTokenizerJson(benchmark::State& state) {
  const auto file_bytes = static_cast<int64_t>(std::filesystem::file_size(deepseek_path()));
  int64_t ids = 0;
  for (auto _ : state) {
    const engram::CompressionTable table = engram::compress_tokenizer_json(deepseek_path());
    benchmark::DoNotOptimize(table.lookup().data());
    ids = table.vocab_size();
  }
  state.SetItemsProcessed(state.iterations() * ids);
  state.SetBytesProcessed(state.iterations() * file_bytes);
}
BENCHMARK(BM_CompressTokenizerJson)->Unit(benchmark::kMillisecond);

void BM_ParseTokenizerJson(benchmark::State& state) {
  const auto file_bytes = static_cast<int64_t>(std::filesystem::file_size(deepseek_path()));
  int64_t ids = 0;
  for (auto _ : state) {
    const engram::TokenizerJson tokenizer = engram::read_tokenizer_json(deepseek_path());
    benchmark::DoNotOptimize(tokenizer.tokens.data());
    ids = tokenizer.vocab_size();
  }
  state.SetItemsProcessed(state.iterations() * ids);
  state.SetBytesProcessed(state.iterations() * file_bytes);
}
BENCHMARK(BM_ParseTokenizerJson)->Unit(benchmark::kMillisecond);

void BM_CompressParsed(benchmark::State& state) {
  const engram::TokenizerJson& tokenizer = deepseek();
  for (auto _ : state) {
    const engram::CompressionTable table = engram::compress_tokenizer(tokenizer);
    benchmark::DoNotOptimize(table.lookup().data());
  }
  state.SetItemsProcessed(state.iterations() * tokenizer.vocab_size());
}
BENCHMARK(BM_CompressParsed)->Unit(benchmark::kMillisecond);

// Arg 0: fast path (compress_vocab); arg 1: reference (compress_vocab_reference).
void BM_CompressDecodedTexts(benchmark::State& state) {
  const engram::TokenizerJson& tokenizer = deepseek();
  const std::vector<std::string> texts = engram::decode_each_id(tokenizer);
  std::vector<std::string> raw;
  int64_t bytes = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    raw.push_back(tokenizer.tokens[i].value_or(""));
    bytes += static_cast<int64_t>(texts[i].size());
  }
  for (auto _ : state) {
    const engram::CompressionTable table = state.range(0) == 0
                                               ? engram::compress_vocab(texts, raw)
                                               : engram::compress_vocab_reference(texts, raw);
    benchmark::DoNotOptimize(table.lookup().data());
  }
  state.SetLabel(state.range(0) == 0 ? "fast" : "reference");
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(texts.size()));
  state.SetBytesProcessed(state.iterations() * bytes);
}
BENCHMARK(BM_CompressDecodedTexts)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace
