// cli/layer_io.hpp: what the layer commands share: the token ids of an input file, a config's
// hasher for one layer (--config, --lookup, --layer), running a layer whole or in chunks, and
// writing a layer's outputs with the layer id in the metadata.
//
//   input_ids I64 or I32 [B, T]                     read_input_ids
//   out F32 [B, T, hc, d] = layer(ids, hidden)      run_layer (chunk <= 0: one call; else K tokens
//                                                   at a time through the decode states)
//   hash_ids I64 [B, T, columns] (+ output)         write_layer_outputs
// Errors: engram::Error naming the file and tensor; UsageError for bad options.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/io/config.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/tokenizer/vocab_compressor.hpp"

namespace engram::cli {

/// input_ids [B, T] (I64 or I32) of a safetensors file.
struct TokenIds {
  int64_t batch = 0, seqlen = 0;
  std::vector<int64_t> ids;
};

inline TokenIds read_input_ids(const SafetensorsFile& file) {
  const TensorView& t = file.at("input_ids");
  ENGRAM_CHECK(t.shape.size() == 2, file.path(), ": tensor 'input_ids' has shape ",
               shape_string(t.shape), ", expected [B, T]");
  return {t.shape[0], t.shape[1], file.read_int64("input_ids")};
}

/// --config CFG.json --lookup LOOKUP.safetensors [--layer L]: the config, the compression table and
/// the layer's hasher (layer L, default the config's first layer id).
struct ConfigLayer {
  EngramConfig config;
  CompressionTable lookup;
  int64_t layer_id = 0;
  std::shared_ptr<const NgramHasher> hasher;

  static ConfigLayer open(const Args& args) {
    ConfigLayer c{EngramConfig::load(args.str("config")),
                  CompressionTable::load(args.str("lookup")), 0, nullptr};
    c.layer_id = args.integer("layer", c.config.layer_ids.front());
    c.config.require_layer(c.layer_id, args.str("config"));
    c.hasher = std::make_shared<const NgramHasher>(c.config, c.lookup.lookup(), c.layer_id);
    return c;
  }
};

/// Writes hash_ids [B, T, columns] (and output [B, T, hc, d] unless empty) to `path`, with the
/// layer id in the metadata.
inline void write_layer_outputs(const std::string& path, int64_t layer_id, int64_t batch,
                                int64_t seqlen, int64_t columns, std::span<const int64_t> hash_ids,
                                const std::vector<int64_t>& output_shape = {},
                                std::span<const float> output = {}) {
  std::vector<TensorWrite> tensors;
  if (!output_shape.empty()) tensors.push_back(tensor_write<float>("output", output_shape, output));
  tensors.push_back(tensor_write<int64_t>("hash_ids", {batch, seqlen, columns}, hash_ids));
  save_safetensors(path, tensors, {{"layer_id", std::to_string(layer_id)}});
}

inline void print_hash_summary(const TokenIds& in, int64_t columns, int64_t layer_id) {
  std::printf("hashed %lld x %lld tokens -> %lld row ids per token (layer %lld)\n",
              static_cast<long long>(in.batch), static_cast<long long>(in.seqlen),
              static_cast<long long>(columns), static_cast<long long>(layer_id));
}

/// "forward WHAT layer L: B x T tokens[ in chunks of K] -> OUT".
inline void print_forward_summary(const std::string& what, int64_t layer_id, const TokenIds& in,
                                  int64_t chunk, const std::string& output) {
  std::printf("forward %s layer %lld: %lld x %lld tokens%s -> %s\n", what.c_str(),
              static_cast<long long>(layer_id), static_cast<long long>(in.batch),
              static_cast<long long>(in.seqlen),
              chunk > 0 ? (" in chunks of " + std::to_string(chunk)).c_str() : "", output.c_str());
}

/// Copies tokens [t0, t0 + k) of every sequence of src [batch, seqlen, width] into dst
/// [batch, k, width] (to_chunk) or back (from_chunk).
template <class T>
void copy_to_chunk(std::span<const T> src, int64_t batch, int64_t seqlen, int64_t width, int64_t t0,
                   int64_t k, std::vector<T>& dst) {
  dst.resize(static_cast<size_t>(batch * k * width));
  for (int64_t b = 0; b < batch; ++b)
    std::copy_n(src.begin() + (b * seqlen + t0) * width, k * width, dst.begin() + b * k * width);
}
template <class T>
void copy_from_chunk(std::span<const T> chunk, int64_t batch, int64_t seqlen, int64_t width,
                     int64_t t0, int64_t k, std::span<T> dst) {
  for (int64_t b = 0; b < batch; ++b)
    std::copy_n(chunk.begin() + b * k * width, k * width, dst.begin() + (b * seqlen + t0) * width);
}

/// Runs `layer` over [B, T] tokens, whole (chunk <= 0) or `chunk` tokens at a time through the
/// incremental path; returns out [B, T, hc, d]. live: empty or [B, T] (0 = dead token).
template <class Layer>
std::vector<float> run_layer(const Layer& layer, const TokenIds& in, std::span<const float> hidden,
                             int64_t chunk, std::span<const uint8_t> live = {}) {
  const int64_t width = layer.hc_mult() * layer.hidden_size();
  std::vector<float> out(hidden.size());
  typename Layer::Workspace ws;
  if (chunk <= 0 || chunk >= in.seqlen) {
    layer.forward_tokens(in.ids, hidden, in.batch, in.seqlen, out, ws, live);
    return out;
  }
  std::vector<typename Layer::State> states;
  for (int64_t b = 0; b < in.batch; ++b) states.push_back(layer.make_state());
  std::vector<typename Layer::State*> state_ptrs;
  for (auto& s : states) state_ptrs.push_back(&s);
  std::vector<int64_t> ids_chunk;
  std::vector<uint8_t> live_chunk;
  std::vector<float> hidden_chunk, out_chunk;
  for (int64_t t0 = 0; t0 < in.seqlen; t0 += chunk) {
    const int64_t k = std::min(chunk, in.seqlen - t0);
    copy_to_chunk<int64_t>(in.ids, in.batch, in.seqlen, 1, t0, k, ids_chunk);
    if (!live.empty()) copy_to_chunk(live, in.batch, in.seqlen, 1, t0, k, live_chunk);
    copy_to_chunk(hidden, in.batch, in.seqlen, width, t0, k, hidden_chunk);
    out_chunk.resize(hidden_chunk.size());
    layer.forward_tokens(ids_chunk, hidden_chunk, in.batch, k, out_chunk, state_ptrs, ws,
                         live_chunk);
    copy_from_chunk<float>(out_chunk, in.batch, in.seqlen, width, t0, k, out);
  }
  return out;
}

}  // namespace engram::cli
