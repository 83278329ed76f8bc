// The README's quick start as one consumer translation unit, for bench/compile_time.sh: what a user
// who includes engram in model code pays at compile time. Keep it in step with the README's
// "Using it" section (the body of quick_start() is the snippet, with the buffers as parameters).
#include <engram/engram.hpp>
#include <engram/layer/engram_layer.hpp>
#include <engram/tokenizer/vocab_compressor.hpp>

void quick_start(std::span<const int64_t> input_ids, std::span<const float> hidden,
                 std::span<float> out, int64_t B, int64_t T, std::span<const int64_t> next_id,
                 std::span<const float> next_hidden, std::span<float> next_out) {
  // Once: the compression table, the hasher and the layer (the table stays memory-mapped).
  const auto config = engram::EngramConfig::load("config.json");
  const auto lookup =
      engram::compress_tokenizer_json("tokenizer.json");  // or CompressionTable::load
  auto hasher =
      std::make_shared<const engram::NgramHasher>(config, lookup.lookup(), /*layer_id=*/1);
  auto weights = std::make_shared<const engram::SafetensorsFile>("model.safetensors");
  const auto layer =
      engram::EngramLayer::load(config, weights, hasher, {.prefix = "layers.1.engram."});

  // Per batch: input_ids [B, T], hidden [B, T, hc_mult, hidden_size] -> out, same shape.
  engram::EngramLayer::Workspace ws;  // reuse: no allocation in the steady state
  layer.forward_tokens(input_ids, hidden, B, T, out, ws);

  // Decoding: one state per sequence, fed one token (or a chunk) at a time.
  auto state = layer.make_state();
  engram::EngramLayer::State* states[] = {&state};
  layer.forward_tokens(next_id, next_hidden, 1, 1, next_out, states, ws);
}
