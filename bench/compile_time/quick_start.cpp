// The README's quick start as a consumer translation unit, for the compile-time benchmark (issue
// 14: under 6 s at -O2 on the 2-core machine). tests/layer/quick_start_test.cpp includes this file
// (with ENGRAM_QUICK_START_NO_MAIN) and runs quick_start::run against the resident layers.
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

// --- the README snippet (paths under `dir`) ---
#include <engram/layer/engram_stack.hpp>
#include <engram/memory/tiers/open_table.hpp>
#include <engram/tokenizer/compression_table.hpp>

namespace quick_start {
using namespace engram;

void run(const std::string& dir, std::span<const int64_t> input_ids, int64_t B, int64_t T,
         std::span<float> hidden,
         const std::vector<std::function<void(std::span<float>)>>& blocks) {
  const auto config = EngramConfig::load(dir + "/config.json");
  // (1) normaliser + vocabulary compression (or compress_tokenizer_json("tokenizer.json"))
  const auto compression = CompressionTable::load(dir + "/lookup.safetensors");
  auto file = std::make_shared<const SafetensorsFile>(dir + "/model.safetensors");
  EngramStack stack(config, /*max_tokens=*/B * T);
  std::deque<OpenedTable> tables;  // the tiers must outlive the stack
  for (const int64_t id : config.layer_ids) {
    const std::string layer = std::to_string(id);
    // (2) the hasher, (3) + (4) the table and the gate block (weights; the rows stay in a tier)
    auto hasher =
        std::make_shared<const NgramHasherT<NumpyMultiplyXor>>(config, compression.lookup(), id);
    auto engram = EngramLayerT<float, DemoBlock, NumpyMultiplyXor>::load(
        config, file, hasher, {.prefix = "layers." + layer + ".engram.", .table_in_tier = true});
    // the tier (SSD file behind a 1 MiB cache) and the prefetch policy
    tables.push_back(open_table("file:" + dir + "/layer" + layer + ".engram?cache_mb=1"));
    stack.set_tiered(id, engram, tables.back().tier, tables.back().info,
                     LookAheadPrefetch{.batches = 1});
  }
  // Per batch: hash once for every layer and start every fetch, then Engram between the blocks.
  stack.begin(input_ids, B, T);
  for (int64_t i = 0; i < static_cast<int64_t>(blocks.size()); ++i) {
    if (stack.contains(i)) stack.add_to(i, hidden);  // hidden += engram(ids, hidden)
    blocks[static_cast<size_t>(i)](hidden);
  }
}
}  // namespace quick_start

// --- end of the README snippet ---

#ifndef ENGRAM_QUICK_START_NO_MAIN
int main(int argc, char** argv) {
  if (argc < 2) return 0;
  std::vector<int64_t> ids(4, 1);
  std::vector<float> hidden(4 * 4 * 64);
  quick_start::run(argv[1], ids, 1, 4, hidden, {});
  return 0;
}
#endif
