// Runs build/bin/engram as a user would and checks its files against the oracle's goldens:
// forward (both variants, whole, chunked and with bf16 projection weights), hash, compress-vocab,
// and the exit codes of errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "cli/cli_support.hpp"
#include "engram/io/safetensors.hpp"
#include "layer/layer_golden.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using test::CliRun;
using ::testing::HasSubstr;

CliRun run(const std::string& args) { return test::run_cli(args); }

std::string tmp(const std::string& name) { return test::temp_file("engram_cli", name); }

const std::string kLookup = test::data_path("tokenizer/deepseek_v3/lookup.safetensors");

class CliForward : public ::testing::TestWithParam<std::string> {};

TEST_P(CliForward, MatchesTheOracleWholeAndChunked) {
  const std::string dir = test::data_path("layer/" + GetParam());
  const SafetensorsFile expected(dir + "/expected.safetensors");
  const std::string layer = expected.metadata().at("layer_id");
  const auto want = expected.at("output").copy_as<float>();
  const auto want_ids = expected.read_int64("hash_ids");
  struct Case {
    const char* chunk;
    const char* flags;
    double tolerance;  // of the largest |output|
  };
  // --bf16-projection rounds the projection weights to bf16: close to the oracle, not equal.
  constexpr double kOracle = test::kOracleTolerance;
  for (const Case c : {Case{"0", "", kOracle}, Case{"1", "", kOracle}, Case{"7", "", kOracle},
                       Case{"0", " --bf16-projection", 2e-2}}) {
    SCOPED_TRACE(std::string("chunk ") + c.chunk + c.flags);
    const std::string out = tmp(GetParam() + "_" + c.chunk + ".safetensors");
    const CliRun r =
        run("forward --config " + dir + "/config.json --lookup " + kLookup + " --weights " + dir +
            "/weights.safetensors --layer " + layer + " --chunk " + c.chunk + c.flags +
            " --input " + dir + "/inputs.safetensors -o " + out);
    ASSERT_EQ(r.status, 0) << r.output;
    const SafetensorsFile got(out);
    EXPECT_EQ(got.read_int64("hash_ids"), want_ids);
    const auto values = got.at("output").copy_as<float>();
    ASSERT_EQ(values.size(), want.size());
    const double err =
        *c.flags != 0 ? test::relative_max_error(values, want) : test::oracle_error(values, want);
    EXPECT_LE(err, c.tolerance);
    if (*c.flags != 0) {
      EXPECT_GT(err, 1e-6) << "bf16 rounding left no trace";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, CliForward,
                         ::testing::Values("demo_a", "demo_b", "demo_c", "demo_d", "fused_a",
                                           "fused_b", "fused_c"));

TEST(Cli, HashWritesTheOracleIds) {
  const std::string dir = test::data_path("layer/demo_a");
  const std::string out = tmp("hash.safetensors");
  const CliRun r = run("hash --config " + dir + "/config.json --lookup " + kLookup +
                       " --layer 15 --input " + dir + "/inputs.safetensors -o " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(SafetensorsFile(out).read_int64("hash_ids"),
            SafetensorsFile(dir + "/expected.safetensors").read_int64("hash_ids"));
}

TEST(Cli, CompressVocabReproducesTheHuggingFaceTable) {
  const std::string out = tmp("lookup.safetensors");
  const CliRun r = run("compress-vocab " +
                       test::data_path("tokenizer/deepseek_v3/tokenizer.json.gz") + " -o " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("vocab 128815 -> 98627 (reduction 23.4%)"));
  EXPECT_EQ(SafetensorsFile(out).read_int64("lookup"),
            SafetensorsFile(kLookup).read_int64("lookup"));
}

TEST(Cli, BadInputIsOneErrorLineAndStatusOne) {
  const std::string bad = tmp("bad.json");
  {
    std::FILE* f = std::fopen(bad.c_str(), "w");
    std::fputs("{\"model\": ", f);
    std::fclose(f);
  }
  const CliRun r = run("compress-vocab " + bad + " -o " + tmp("x.safetensors"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, HasSubstr("engram: error: "));
  EXPECT_THAT(r.output, HasSubstr(bad));
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1);
  const std::string dir = test::data_path("layer/demo_a");
  const CliRun layer =
      run("hash --config " + dir + "/config.json --lookup " + kLookup + " --layer 2 --input " +
          dir + "/inputs.safetensors -o " + tmp("h.safetensors"));
  EXPECT_EQ(layer.status, 1);
  EXPECT_THAT(layer.output, HasSubstr("layer 2 is not in layer_ids"));
}

TEST(Cli, BadUsageIsStatusTwo) {
  EXPECT_EQ(run("").status, 2);
  EXPECT_EQ(run("frobnicate").status, 2);
  EXPECT_EQ(run("hash --config").status, 2);
  EXPECT_EQ(run("forward --chunk seven").status, 2);
}

}  // namespace
}  // namespace engram
