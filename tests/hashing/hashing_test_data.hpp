// Test helpers for the hashing tests: the committed golden cases and corpora in tests/data/hashing
// (written by tests/data/hashing/make_golden.py from the PyTorch oracle and NumPy).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engram/io/config_json.hpp"
#include "engram/io/safetensors.hpp"
#include "support/test_data.hpp"

namespace engram::test {

/// The DeepSeek-V3 compression table (128,815 tokenizer ids -> 98,627 compressed ids).
inline const std::vector<int64_t>& dsv3_lookup() {
  static const std::vector<int64_t> lookup =
      SafetensorsFile(data_path("hashing/dsv3_lookup.safetensors")).read_int64("lookup");
  return lookup;
}

/// The first 24,576 DeepSeek-V3 token ids of the King James Bible.
inline const std::vector<int64_t>& kjv_ids() {
  static const std::vector<int64_t> ids =
      SafetensorsFile(data_path("hashing/kjv_slice.safetensors")).read_int64("input_ids");
  return ids;
}

/// One oracle case: ids [batch, seqlen] -> hash_ids [batch, seqlen, cols] for layer_id.
struct GoldenCase {
  std::string name;
  std::string description;
  EngramConfig config;
  int64_t layer_id = 0;
  std::vector<int64_t> lookup;  ///< the case's own (reduced) table, or the DeepSeek-V3 one
  int64_t batch = 0, seqlen = 0;
  std::vector<int64_t> ids, hash_ids, multipliers, primes;
};

inline GoldenCase load_golden(const std::string& name) {
  const SafetensorsFile file(data_path("hashing/golden/" + name + ".safetensors"));
  GoldenCase g;
  g.name = name;
  g.description = file.metadata().at("description");
  g.config = EngramConfig::from_json(nlohmann::json::parse(file.metadata().at("config")), name);
  g.layer_id = std::stoll(file.metadata().at("layer_id"));
  g.lookup = file.metadata().at("lookup") == "inline" ? file.read_int64("lookup") : dsv3_lookup();
  const TensorView& ids = file.at("input_ids");
  g.batch = ids.shape.at(0);
  g.seqlen = ids.shape.at(1);
  g.ids = file.read_int64("input_ids");
  g.hash_ids = file.read_int64("hash_ids");
  g.multipliers = file.read_int64("multipliers");
  g.primes = file.read_int64("primes");
  return g;
}

/// Every committed golden case.
inline const std::vector<std::string>& golden_case_names() {
  static const std::vector<std::string> names = {
      "shared_small_l15", "shared_fused_l14", "dsv3_kjv_n3h8", "dsv3_kjv_n4h8",
      "dsv3_n2h1_vocab1", "dsv3_n3h2_huge",   "llama2_n5h3",   "claude_n3h5",
      "gpt4o_n4h2",       "gemma3_n2h16",     "qwen3_n3h4",    "dsv3_negative_ids"};
  return names;
}

/// A demo-variant config with the hashing fields set (the others are valid defaults).
inline EngramConfig hashing_config(int64_t max_ngram_size, int64_t heads,
                                   std::vector<int64_t> vocab_sizes,
                                   std::vector<int64_t> layer_ids = {1, 15}, int64_t seed = 0,
                                   int64_t pad_id = 2) {
  EngramConfig c;
  c.max_ngram_size = max_ngram_size;
  c.n_head_per_ngram = heads;
  c.n_embed_per_ngram = 64 * heads;
  c.engram_vocab_size = std::move(vocab_sizes);
  c.layer_ids = std::move(layer_ids);
  c.seed = seed;
  c.pad_id = pad_id;
  return c;
}

/// `count` uniform ids in [0, limit) from a fixed seed.
inline std::vector<int64_t> random_ids(size_t count, int64_t limit, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(0, limit - 1);
  std::vector<int64_t> ids(count);
  for (int64_t& id : ids) id = dist(rng);
  return ids;
}

}  // namespace engram::test
