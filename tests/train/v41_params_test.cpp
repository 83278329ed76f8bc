// Params from a released V4.1 directory (FP8 table rows and FP8 wkv decoded to f32): the decoded
// rows are the oracle's memory, the decoded wkv is Fp8BlockLinear's reference, and the f32
// training forward is within FP8 activation rounding of the released layer's output.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engram/layer/engram_model.hpp"
#include "engram/nn/fp8_linear.hpp"
#include "engram/train/backward.hpp"
#include "train/grad_check.hpp"

namespace engram::train {
namespace {

const std::string kData = ENGRAM_TEST_DATA_DIR "/v41/golden/";
const std::string kLookup = ENGRAM_TEST_DATA_DIR "/tokenizer/deepseek_v3/lookup.safetensors";

TEST(V41Params, DecodeTheReleasedFp8TensorsAndTrainForward) {
  const EngramModel model = EngramModel::open(kData + "model", {.lookup = kLookup});
  const SafetensorsFile inputs(kData + "inputs.safetensors"),
      expected(kData + "expected.safetensors");
  const int64_t layer_id = std::stoll(expected.metadata().at("layer_id"));
  const FusedEngramLayer& layer = model.layer(layer_id);
  const auto& weights = layer.weights();
  ASSERT_FALSE(weights.wkv_fp8.empty());  // FP8 wkv as released
  const auto params = params_from_weights<float>(weights);
  const EngramConfig& config = params.config;

  const std::vector<int64_t> ids = inputs.read_int64("input_ids");
  const int64_t batch = inputs.at("input_ids").shape[0], seq_len = inputs.at("input_ids").shape[1];
  const std::vector<uint8_t> live = model.live_mask(ids);
  const std::vector<int64_t> hash_ids = expected.read_int64("hash_ids");
  const auto memory = expected.at("memory").copy_as<float>();
  const int64_t cols = config.num_columns(), r = config.row_dim(), m = config.memory_dim();
  // rows: exactly the oracle's dequantised memory, for every live token
  for (int64_t t = 0; t < batch * seq_len; ++t) {
    if (!live[t]) continue;
    for (int64_t k = 0; k < cols; ++k)
      for (int64_t j = 0; j < r; ++j)
        ASSERT_EQ(params.table[(params.column_offsets[k] + hash_ids[t * cols + k]) * r + j],
                  memory[t * m + k * r + j])
            << "token " << t << " column " << k;
  }
  // wkv: x W^T equals the FP8 projection's reference
  const int64_t n = (config.hc_mult + 1) * config.hidden_size;
  const Fp8BlockLinear fp8(weights.wkv_fp8, weights.wkv_fp8_scale, n, m);
  std::mt19937 rng(4);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(3 * m)), y_fp8(static_cast<size_t>(3 * n)),
      y_params(y_fp8.size());
  for (auto& v : x) v = normal(rng);
  fp8.forward_reference(x.data(), 3, y_fp8.data());
  const auto& wkv = params.at("wkv.weight").value;
  for (int64_t row = 0; row < 3; ++row)
    for (int64_t o = 0; o < n; ++o) {
      double acc = 0;
      for (int64_t i = 0; i < m; ++i) acc += double(x[row * m + i]) * double(wkv[o * m + i]);
      y_params[row * n + o] = static_cast<float>(acc);
    }
  EXPECT_LT(test::relative_error(y_params, y_fp8), 1e-6);

  // f32 training forward vs the released arithmetic (FP8 activations, bf16 kv): close, not equal
  const auto hidden = inputs.at("hidden_states").copy_as<float>();
  std::vector<float> out(hidden.size());
  Tape tape;
  forward(params, hash_ids, std::span<const float>(hidden), batch, seq_len, std::span<float>(out),
          tape, live);
  const auto released = expected.at("output").copy_as<float>();
  EXPECT_LT(test::relative_error(out, released), 1e-2);  // measured 2.7e-3
  const int64_t width = config.hc_mult * config.hidden_size;
  for (int64_t t = 0; t < batch * seq_len; ++t) {
    if (live[t]) continue;
    for (int64_t j = 0; j < width; ++j)  // dead tokens: out = hidden exactly
      ASSERT_EQ(out[t * width + j], hidden[t * width + j]) << "token " << t;
  }
  Grads grads;
  backward(params, std::span<const float>(hidden), tape, grads);
  for (const auto& row : grads.table.rows) {
    bool read_by_live = false;
    for (int64_t t = 0; t < batch * seq_len && !read_by_live; ++t)
      for (int64_t k = 0; k < cols; ++k)
        read_by_live |= live[t] && params.column_offsets[k] + hash_ids[t * cols + k] == row;
    ASSERT_TRUE(read_by_live) << "row " << row << " has a gradient but no live token read it";
  }
}

}  // namespace
}  // namespace engram::train
