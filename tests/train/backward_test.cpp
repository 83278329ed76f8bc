// Training forward/backward of both blocks: PyTorch autograd goldens (f32, f64; repeated n-grams,
// dead tokens), central finite differences in double, the inference layers' forward, recompute ==
// save, and bitwise equality across thread counts.
#include "engram/train/backward.hpp"
#include "engram/io/config.hpp"

#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engram/layer/engram_layer.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "support/test_data.hpp"
#include "train/grad_check.hpp"

namespace engram::train {
namespace {

using test::data_path;
using test::relative_error;

template <class Scalar>
std::vector<Scalar> read_as(const SafetensorsFile& file, const std::string& name) {
  const TensorView& t = file.at(name);
  if (t.dtype == DType::kF64) {
    const auto v = t.copy_as<double>();
    return {v.begin(), v.end()};
  }
  const auto v = t.copy_as<float>();
  return {v.begin(), v.end()};
}

/// One golden case of tests/data/train/<name>: inputs, params, expected outputs and gradients.
template <class Scalar>
struct GradCase {
  EngramConfig config;
  int64_t batch = 0, seq_len = 0;
  std::vector<int64_t> hash_ids, primes;
  std::vector<Scalar> hidden, grad_output;
  std::vector<uint8_t> live;
  ParamsT<Scalar> params;
  std::shared_ptr<const SafetensorsFile> expected;

  explicit GradCase(const std::string& name, const std::string& expected_file) {
    const std::string dir = data_path("train/" + name);
    config = EngramConfig::load(dir + "/config.json");
    const SafetensorsFile inputs(dir + "/inputs.safetensors");
    expected = std::make_shared<const SafetensorsFile>(dir + "/" + expected_file);
    batch = inputs.at("input_ids").shape.at(0);
    seq_len = inputs.at("input_ids").shape.at(1);
    hidden = read_as<Scalar>(inputs, "hidden_states");
    grad_output = read_as<Scalar>(inputs, "grad_output");
    if (inputs.find("live") != nullptr) live = inputs.at("live").copy_as<uint8_t>();
    hash_ids = expected->read_int64("hash_ids");
    primes = expected->read_int64("primes");
    params = load_params<Scalar>(config, dir + "/weights.safetensors", {.column_rows = primes});
  }
  int64_t width() const { return config.hc_mult * config.hidden_size; }
};

template <class Scalar>
class GradGoldenTest : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(GradGoldenTest, Scalars);

TYPED_TEST(GradGoldenTest, MatchesPyTorchAutograd) {
  using Scalar = TypeParam;
  const bool f64 = std::is_same_v<Scalar, double>;
  const double tolerance = f64 ? 1e-10 : 2e-5;
  for (const std::string name : {"demo_grad", "fused_grad"}) {
    SCOPED_TRACE(name);
    GradCase<Scalar> g(name, f64 ? "expected_f64.safetensors" : "expected.safetensors");
    std::vector<Scalar> out(g.hidden.size());
    TapeT<Scalar> tape;
    forward(g.params, g.hash_ids, std::span<const Scalar>(g.hidden), g.batch, g.seq_len,
            std::span<Scalar>(out), tape, g.live);
    EXPECT_LT(relative_error(out, read_as<double>(*g.expected, "output")), tolerance);
    GradsT<Scalar> grads;
    backward(g.params, std::span<const Scalar>(g.grad_output), tape, grads);
    EXPECT_LT(relative_error(grads.hidden, read_as<double>(*g.expected, "grad_hidden_states")),
              tolerance);
    for (const auto& t : grads.dense) {
      SCOPED_TRACE(t.name);
      EXPECT_LT(relative_error(t.value, read_as<double>(*g.expected, t.name)), tolerance);
    }
    EXPECT_EQ(grads.table.rows, g.expected->read_int64("table_grad_rows"));
    EXPECT_EQ(grads.table.row_dim, g.config.row_dim());
    EXPECT_LT(relative_error(grads.table.values, read_as<double>(*g.expected, "table_grad_values")),
              tolerance);
    // several contributions per row: fewer rows than live reads
    EXPECT_LT(grads.table.size(), static_cast<int64_t>(g.hash_ids.size()));
  }
}

TYPED_TEST(GradGoldenTest, RecomputeEqualsSaveBitwiseAndTapesReuse) {
  using Scalar = TypeParam;
  for (const std::string name : {"demo_grad", "fused_grad"}) {
    SCOPED_TRACE(name);
    GradCase<Scalar> g(name, "expected.safetensors");
    std::vector<Scalar> out_save(g.hidden.size()), out_recompute(g.hidden.size());
    TapeT<Scalar> saving;
    ActivationsT<Scalar> shared;
    TapeT<Scalar> recomputing(shared);
    EXPECT_TRUE(recomputing.recompute());
    GradsT<Scalar> a, b;
    for (int pass = 0; pass < 2; ++pass) {
      forward(g.params, g.hash_ids, std::span<const Scalar>(g.hidden), g.batch, g.seq_len,
              std::span<Scalar>(out_save), saving, g.live);
      forward(g.params, g.hash_ids, std::span<const Scalar>(g.hidden), g.batch, g.seq_len,
              std::span<Scalar>(out_recompute), recomputing, g.live);
      const size_t bytes = saving.bytes();
      backward(g.params, std::span<const Scalar>(g.grad_output), saving, a);
      backward(g.params, std::span<const Scalar>(g.grad_output), recomputing, b);
      if (pass == 1) {
        EXPECT_EQ(saving.bytes(), bytes);  // a reused tape does not grow
      }
    }
    EXPECT_LT(recomputing.bytes(), saving.bytes());
    EXPECT_EQ(out_save, out_recompute);
    EXPECT_EQ(a.hidden, b.hidden);
    for (size_t i = 0; i < a.dense.size(); ++i) EXPECT_EQ(a.dense[i].value, b.dense[i].value);
    EXPECT_EQ(a.table.rows, b.table.rows);
    EXPECT_EQ(a.table.values, b.table.values);
  }
}

TEST(TrainForward, EqualsTheInferenceLayers) {
  for (const std::string name : {"demo_a", "demo_c", "fused_a", "fused_c"}) {
    SCOPED_TRACE(name);
    const std::string dir = data_path("layer/" + name);
    const EngramConfig config = EngramConfig::load(dir + "/config.json");
    const SafetensorsFile inputs(dir + "/inputs.safetensors");
    const SafetensorsFile expected(dir + "/expected.safetensors");
    const auto hidden = inputs.at("hidden_states").copy_as<float>();
    const auto hash_ids = expected.read_int64("hash_ids");
    const auto primes = expected.read_int64("primes");
    const int64_t batch = inputs.at("input_ids").shape[0],
                  seq_len = inputs.at("input_ids").shape[1];
    const CheckpointOptions options{.column_rows = primes};
    const auto params = load_params<float>(config, dir + "/weights.safetensors", options);
    std::vector<float> train_out(hidden.size()), layer_out(hidden.size());
    Tape tape;
    forward(params, hash_ids, std::span<const float>(hidden), batch, seq_len,
            std::span<float>(train_out), tape);
    if (config.variant == Variant::kFused) {
      const auto layer = FusedEngramLayer::load(config, dir + "/weights.safetensors", options);
      FusedEngramLayer::Workspace ws;
      layer.forward(hash_ids, hidden, batch, seq_len, layer_out, ws);
    } else {
      const auto layer = EngramLayer::load(config, dir + "/weights.safetensors", options);
      EngramLayer::Workspace ws;
      layer.forward(hash_ids, hidden, batch, seq_len, layer_out, ws);
    }
    EXPECT_LT(relative_error(train_out, layer_out), 1e-5);
    EXPECT_LT(relative_error(train_out, expected.at("output").copy_as<float>()), 1e-5);
  }
}

// ---------------------------------------------------------------- finite differences (double)

EngramConfig tiny_config(bool fused) {
  EngramConfig c;
  c.variant = fused ? Variant::kFused : Variant::kDemo;
  c.engram_vocab_size = {7, 11};
  c.max_ngram_size = 3;
  c.n_head_per_ngram = 2;
  c.n_embed_per_ngram = 6;  // demo row_dim 3
  c.head_dim = 4;           // fused row_dim
  c.quant_block = 4;
  c.hidden_size = 5;
  c.hc_mult = 2;
  c.kernel_size = 3;
  c.rms_norm_eps = 1e-6;
  c.layer_ids = {1};
  return c;
}

template <class Scalar = double>
ParamsT<Scalar> random_params(const EngramConfig& config, uint32_t seed,
                              std::vector<int64_t> column_rows = {7, 5, 11, 13}) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 0.5);
  ParamsT<Scalar> p;
  p.config = config;
  p.dense = zero_dense<Scalar>(config);
  for (auto& t : p.dense) {
    const bool gain = t.name.find("norm") != std::string::npos || t.name.find("_weight") == 1;
    for (auto& v : t.value) v = static_cast<Scalar>((gain ? 1.0 : 0.0) + normal(rng));
  }
  p.column_rows = std::move(column_rows);
  int64_t offset = 0;
  for (int64_t rows : p.column_rows) {
    p.column_offsets.push_back(offset);
    offset += rows;
  }
  p.table_rows = offset + 2;  // spare rows past the columns
  p.table.resize(static_cast<size_t>(p.table_rows * config.row_dim()));
  for (auto& v : p.table) v = static_cast<Scalar>(normal(rng));
  return p;
}

TEST(TrainBackward, MatchesCentralFiniteDifferences) {
  for (const bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused" : "demo");
    const EngramConfig config = tiny_config(fused);
    ParamsT<double> params = random_params(config, fused ? 3 : 4);
    const int64_t batch = 2, seq_len = 9, c = config.hc_mult * config.hidden_size;
    std::mt19937 rng(5);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<int64_t> hash_ids;
    for (int64_t t = 0; t < batch * seq_len; ++t)
      for (int64_t k = 0; k < 4; ++k) hash_ids.push_back((t * 3 + k) % 4 % params.column_rows[k]);
    std::vector<double> hidden(static_cast<size_t>(batch * seq_len * c)), gout(hidden.size());
    for (auto& v : hidden) v = normal(rng);
    for (auto& v : gout) v = normal(rng);
    std::vector<uint8_t> live;
    if (fused) live = {1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1};
    std::vector<double> out(hidden.size());
    TapeT<double> tape;
    auto loss = [&]() {
      TapeT<double> t;
      std::vector<double> o(hidden.size());
      forward(params, hash_ids, std::span<const double>(hidden), batch, seq_len,
              std::span<double>(o), t, live);
      double sum = 0;
      for (size_t i = 0; i < o.size(); ++i) sum += o[i] * gout[i];
      return sum;
    };
    forward(params, hash_ids, std::span<const double>(hidden), batch, seq_len,
            std::span<double>(out), tape, live);
    GradsT<double> grads;
    backward(params, std::span<const double>(gout), tape, grads);
    auto check = [&](double& x, double analytic, const std::string& what) {
      const double h = 1e-6, saved = x;
      x = saved + h;
      const double up = loss();
      x = saved - h;
      const double down = loss();
      x = saved;
      const double numeric = (up - down) / (2 * h);
      EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric))) << what;
    };
    for (size_t i = 0; i < params.dense.size(); ++i) {
      auto& t = params.dense[i];
      for (int64_t j : {int64_t{0}, t.numel() / 2, t.numel() - 1})
        check(t.value[j], grads.dense[i].value[j], t.name + "[" + std::to_string(j) + "]");
    }
    for (int64_t j : {int64_t{0}, int64_t{7}, static_cast<int64_t>(hidden.size()) - 1})
      check(hidden[j], grads.hidden[j], "hidden[" + std::to_string(j) + "]");
    // every touched row's first and last value; an untouched row has no gradient
    const int64_t r = config.row_dim();
    for (int64_t k = 0; k < grads.table.size(); ++k)
      for (int64_t j : {int64_t{0}, r - 1})
        check(params.table[grads.table.rows[k] * r + j], grads.table.values[k * r + j],
              "table row " + std::to_string(grads.table.rows[k]));
    check(params.table[(params.table_rows - 1) * r], 0.0, "spare row");
  }
}

TEST(TrainBackward, BitwiseEqualForOneAndTwoThreads) {
  const int saved = Eigen::nbThreads();
  for (const std::string name : {"demo_grad", "fused_grad"}) {
    SCOPED_TRACE(name);
    GradCase<float> g(name, "expected.safetensors");
    Grads grads[2];
    std::vector<float> outs[2];
    for (int threads = 1; threads <= 2; ++threads) {
      Eigen::setNbThreads(threads);
      outs[threads - 1].resize(g.hidden.size());
      Tape tape;
      forward(g.params, g.hash_ids, std::span<const float>(g.hidden), g.batch, g.seq_len,
              std::span<float>(outs[threads - 1]), tape, g.live);
      backward(g.params, std::span<const float>(g.grad_output), tape, grads[threads - 1]);
    }
    EXPECT_EQ(outs[0], outs[1]);
    EXPECT_EQ(grads[0].hidden, grads[1].hidden);
    for (size_t i = 0; i < grads[0].dense.size(); ++i)
      EXPECT_EQ(grads[0].dense[i].value, grads[1].dense[i].value) << grads[0].dense[i].name;
    EXPECT_EQ(grads[0].table.values, grads[1].table.values);
  }
  // Larger shapes: several GEMM tiles (train/detail/gemm.hpp) and feature-parallel reductions.
  for (const bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused 640 tokens" : "demo 640 tokens");
    EngramConfig config = tiny_config(fused);
    config.hidden_size = 72;
    config.hc_mult = 4;
    config.n_embed_per_ngram = 32;
    config.head_dim = 16;
    const auto params = random_params<float>(config, 9, {101, 103, 107, 109});
    const int64_t batch = 2, seq_len = 320, tokens = batch * seq_len;
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<int64_t> ids;
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t k = 0; k < 4; ++k) ids.push_back(static_cast<int64_t>(rng() % 50));
    std::vector<float> hidden(static_cast<size_t>(tokens * 4 * 72)), gout(hidden.size());
    for (auto& v : hidden) v = normal(rng);
    for (auto& v : gout) v = normal(rng);
    Grads grads[2];
    std::vector<float> outs[2];
    for (int threads = 1; threads <= 2; ++threads) {
      Eigen::setNbThreads(threads);
      outs[threads - 1].resize(hidden.size());
      Tape tape;
      forward(params, ids, std::span<const float>(hidden), batch, seq_len,
              std::span<float>(outs[threads - 1]), tape);
      backward(params, std::span<const float>(gout), tape, grads[threads - 1]);
    }
    EXPECT_EQ(outs[0], outs[1]);
    EXPECT_EQ(grads[0].hidden, grads[1].hidden);
    for (size_t i = 0; i < grads[0].dense.size(); ++i)
      EXPECT_EQ(grads[0].dense[i].value, grads[1].dense[i].value) << grads[0].dense[i].name;
    EXPECT_EQ(grads[0].table.values, grads[1].table.values);
  }
  Eigen::setNbThreads(saved);
}

TEST(TrainForward, RejectsBadInputs) {
  const EngramConfig config = tiny_config(false);
  const ParamsT<double> params = random_params(config, 1);
  std::vector<int64_t> ids(2 * 4, 0);
  std::vector<double> hidden(2 * 10), out(2 * 10);
  TapeT<double> tape;
  ids[5] = 99;  // beyond column 1's 5 rows
  EXPECT_THROW(
      forward(params, ids, std::span<const double>(hidden), 1, 2, std::span<double>(out), tape),
      Error);
  ids[5] = 0;
  EXPECT_THROW(
      forward(params, ids, std::span<const double>(hidden), 1, 3, std::span<double>(out), tape),
      Error);
  GradsT<double> grads;
  EXPECT_THROW(backward(params, std::span<const double>(out), tape, grads), Error);  // no forward
}

}  // namespace
}  // namespace engram::train
