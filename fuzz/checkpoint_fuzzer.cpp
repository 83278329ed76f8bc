// Fuzzes checkpoint loading and the forward pass over what was loaded: any bytes, read as a
// safetensors checkpoint of a fixed small config (demo, or fused when the file has "wkv.weight"),
// give a layer whose forward stays in bounds, or an engram::Error. Seeds:
// fuzz/make_checkpoint_seeds.py (keep its sizes equal to the configs here); with
// ENGRAM_FUZZ_SEED_CHECK set, an error aborts, to check that every seed loads and runs.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "engram/io/config.hpp"
#include "engram/io/config_json.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "fuzz_support.hpp"

namespace {

constexpr const char* kDemoConfig =
    R"({"variant": "demo", "engram_vocab_size": [5, 7], "max_ngram_size": 3,
        "n_embed_per_ngram": 8, "n_head_per_ngram": 2, "layer_ids": [0], "pad_id": 0, "seed": 0, "kernel_size": 2,
        "hidden_size": 4, "hc_mult": 2})";
constexpr const char* kFusedConfig =
    R"({"variant": "fused", "engram_vocab_size": [5], "max_ngram_size": 2, "n_head_per_ngram": 2,
        "head_dim": 16, "quant_block": 16, "layer_ids": [0], "pad_id": 0, "seed": 0, "hidden_size": 4, "hc_mult": 2})";

/// Runs two sequences of three tokens with small hash ids (some out of range: errors are fine).
template <class Layer>
void run(const Layer& layer) {
  constexpr int64_t kBatch = 2, kSeqLen = 3;
  const int64_t cols = layer.num_columns(), tokens = kBatch * kSeqLen;
  const int64_t width = layer.hc_mult() * layer.hidden_size();
  std::vector<int64_t> ids(static_cast<size_t>(tokens * cols));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i % 8);
  std::vector<float> hidden(static_cast<size_t>(tokens * width), 0.5f), out(hidden.size());
  typename Layer::Workspace ws;
  try {
    layer.forward(ids, hidden, kBatch, kSeqLen, out, ws);
  } catch (const engram::Error&) {
  }
  for (auto& id : ids) id = 0;
  layer.forward(ids, hidden, kBatch, kSeqLen, out, ws);  // row 0 of every column always exists
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const engram::EngramConfig demo =
      engram::EngramConfig::from_json(nlohmann::json::parse(kDemoConfig), "demo");
  static const engram::EngramConfig fused =
      engram::EngramConfig::from_json(nlohmann::json::parse(kFusedConfig), "fused");
  const std::string path = engram::fuzz::write_input(data, size, ".safetensors");
  try {
    auto file = std::make_shared<const engram::SafetensorsFile>(path);
    if (file->find("wkv.weight") != nullptr)
      run(engram::FusedEngramLayer::load(fused, file, {.prefix = "", .column_rows = {5, 7}}));
    else
      run(engram::EngramLayer::load(demo, file));
  } catch (const engram::Error&) {
    if (std::getenv("ENGRAM_FUZZ_SEED_CHECK") != nullptr) throw;  // seeds must load and run
  }
  return 0;
}
