// Test helpers of the layer tests: the oracle goldens in tests/data/layer/<name>/ and error
// metrics.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "engram/hashing/ngram_hasher.hpp"
#include "engram/io/config.hpp"
#include "engram/io/safetensors.hpp"
#include "hashing/hashing_test_data.hpp"
#include "support/test_data.hpp"

namespace engram::test {

/// One oracle golden: config, weights (mapped), inputs and expected outputs.
struct LayerGolden {
  std::string name;
  std::string dir;
  EngramConfig config;
  std::shared_ptr<const SafetensorsFile> weights;
  int64_t batch = 0;
  int64_t seq_len = 0;
  std::vector<int64_t> input_ids;  // [B, T]
  std::vector<int64_t> hash_ids;   // [B, T, cols]
  std::vector<float> hidden;       // [B, T, hc, d]
  std::vector<float> expected;     // [B, T, hc, d]
  std::vector<int64_t> primes;     // [cols]: the per-column table sizes
  int64_t layer_id = 0;

  int64_t tokens() const { return batch * seq_len; }
  int64_t width() const { return config.hc_mult * config.hidden_size; }
};

inline LayerGolden load_layer_golden(const std::string& name) {
  LayerGolden g;
  g.name = name;
  g.dir = data_path("layer/" + name);
  g.config = EngramConfig::load(g.dir + "/config.json");
  g.weights = std::make_shared<const SafetensorsFile>(g.dir + "/weights.safetensors");
  const SafetensorsFile inputs(g.dir + "/inputs.safetensors");
  const SafetensorsFile expected(g.dir + "/expected.safetensors");
  const TensorView& ids = inputs.at("input_ids");
  g.batch = ids.shape.at(0);
  g.seq_len = ids.shape.at(1);
  g.input_ids = inputs.read_int64("input_ids");
  g.hidden = inputs.at("hidden_states").copy_as<float>();
  g.hash_ids = expected.read_int64("hash_ids");
  g.expected = expected.at("output").copy_as<float>();
  g.primes = expected.read_int64("primes");
  g.layer_id = std::stoll(expected.metadata().at("layer_id"));
  return g;
}

/// max |a - b| / max |reference|: the error relative to the output's largest magnitude.
template <class A, class B>
double relative_max_error(std::span<const A> actual, std::span<const B> reference) {
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < reference.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(double(actual[i]) - double(reference[i])));
    max_ref = std::max(max_ref, std::abs(double(reference[i])));
  }
  return max_ref == 0 ? max_diff : max_diff / max_ref;
}

template <class A, class B>
double relative_max_error(const std::vector<A>& actual, const std::vector<B>& reference) {
  return relative_max_error(std::span<const A>(actual), std::span<const B>(reference));
}

/// The bound every layer test holds a layer's output to against the oracle's (relative_max_error
/// over a whole golden, f32 or f64 weights as stored): README "Conformance" states it.
/// Measured on all goldens (demo_a..d, fused_a..c), every path the tests run (fast, reference,
/// whole, chunked 1/7/16, from tokens, AnyEngramLayer, the CLI's forward; float and double) with
/// ENGRAM_PRINT_ORACLE_ERROR=1, GCC 12 -march=native (AVX-512), 2026-11-30: at most 5.0e-7 in
/// float (demo_c) and 4.5e-7 in double (the oracle itself computes in float). The bound leaves a
/// margin of 4x for other compilers, instruction sets and thread counts.
inline constexpr double kOracleTolerance = 2e-6;

/// relative_max_error(actual, oracle output); with ENGRAM_PRINT_ORACLE_ERROR set, also printed
/// to stderr with the test's name (the measurement behind kOracleTolerance).
template <class A>
double oracle_error(std::span<const A> actual, std::span<const float> expected) {
  const double err = relative_max_error(actual, expected);
  if (std::getenv("ENGRAM_PRINT_ORACLE_ERROR") != nullptr) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::fprintf(stderr, "oracle error %s.%s %s %.3e\n", info ? info->test_suite_name() : "?",
                 info ? info->name() : "?", sizeof(A) == sizeof(double) ? "double" : "float", err);
  }
  return err;
}

template <class A>
double oracle_error(const std::vector<A>& actual, const std::vector<float>& expected) {
  return oracle_error(std::span<const A>(actual), std::span<const float>(expected));
}

/// Writes the golden's tensors to `path` under `prefix`, with `edit` applied, plus an unrelated
/// tensor.
inline void write_checkpoint(const LayerGolden& g, const std::string& path,
                             const std::string& prefix,
                             const std::function<void(std::vector<TensorWrite>&)>& edit = {}) {
  std::vector<TensorWrite> tensors;
  static const float kOther[3] = {1, 2, 3};
  tensors.push_back(tensor_write("layers.0.attn.weight", {3}, std::span<const float>(kOther)));
  for (const TensorView& t : g.weights->tensors())
    tensors.push_back({prefix + t.name, t.dtype, t.shape, t.bytes});
  if (edit) edit(tensors);
  save_safetensors(path, tensors);
}

/// Writes the golden's checkpoint to `path` with F32 tensor `name`'s values changed by `change`.
inline void write_checkpoint_editing(const LayerGolden& g, const std::string& path,
                                     const std::string& name,
                                     const std::function<void(std::vector<float>&)>& change) {
  std::vector<float> values;
  write_checkpoint(g, path, "", [&](std::vector<TensorWrite>& tensors) {
    for (auto& t : tensors)
      if (t.name == name) {
        values.resize(t.bytes.size() / sizeof(float));
        std::memcpy(values.data(), t.bytes.data(), t.bytes.size());
        change(values);
        t.bytes = std::as_bytes(std::span<const float>(values));
      }
  });
}

// dsv3_lookup() (hashing/hashing_test_data.hpp): the compression table the layer goldens were made
// with.

/// The golden's layer with a token-id front end: the hasher of layer `layer_id` over dsv3_lookup.
template <class Layer>
Layer load_with_hasher(const LayerGolden& g, int64_t layer_id) {
  auto hasher = std::make_shared<const NgramHasher>(g.config, dsv3_lookup(), layer_id);
  return Layer::load(g.config, g.weights, std::move(hasher));
}

/// The layer's output over the whole golden batch from its hash ids (the fast path).
template <class Layer>
std::vector<float> forward_whole(const Layer& layer, const LayerGolden& g) {
  typename Layer::Workspace ws;
  std::vector<float> out(g.expected.size());
  layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, out, ws);
  return out;
}

inline std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("engram_layer_test_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

}  // namespace engram::test
