// `engram info|hash|forward --model DIR` on V4.1 directories laid out as released
// (tests/data/v41): the real config's row totals, the oracle's hash ids exactly, outputs within
// 1e-3 of the largest |output - hidden| whole and in chunks of 1 and 5, the same from the rows a
// tier serves (hf: shards as shipped, file: packed), --help, one error line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "cli/cli_support.hpp"
#include "engram/io/safetensors.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using test::CliRun;
using ::testing::HasSubstr;

std::string tmp(const std::string& name) { return test::temp_file("engram_model_cli", name); }
const std::string kLookup = test::data_path("tokenizer/deepseek_v3/lookup.safetensors");

TEST(ModelCli, InfoOnTheReleasedConfigPrintsBothRowTotals) {
  const CliRun r = test::run_cli("info --model " + test::data_path("v41/flash_config.json"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("layer 1: rows 384006168 (engram_num_embeddings 384006168: "
                                  "match)"));
  EXPECT_THAT(r.output, HasSubstr("layer 14: rows 384016682 (engram_num_embeddings 384016682: "
                                  "match)"));
  EXPECT_THAT(r.output, HasSubstr("multipliers [76632096046245, 4839876093313, 35959672319349, "
                                  "73987337458391]"));
  EXPECT_THAT(r.output, HasSubstr("primes [16000057, "));
}

TEST(ModelCli, InfoOnADirectoryNamesTheShards) {
  const CliRun r = test::run_cli("info --model " + test::data_path("v41/golden/model"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("layer 3: rows 6332"));
  EXPECT_THAT(r.output, HasSubstr("shards model-00002-of-00003.safetensors, "
                                  "model-00003-of-00003.safetensors"));
}

TEST(ModelCli, HashAndForwardMatchTheOracle) {
  for (const std::string name : {"golden", "hc2_n3h3"}) {
    SCOPED_TRACE(name);
    const std::string dir = test::data_path("v41/" + name);
    const SafetensorsFile expected(dir + "/expected.safetensors");
    const std::string layer = expected.metadata().at("layer_id");
    const std::string common = " --model " + dir + "/model --lookup " + kLookup + " --layer " +
                               layer + " --input " + dir + "/inputs.safetensors";
    const std::string hashed = tmp(name + "_hash.safetensors");
    const CliRun h = test::run_cli("hash" + common + " -o " + hashed);
    ASSERT_EQ(h.status, 0) << h.output;
    EXPECT_EQ(SafetensorsFile(hashed).read_int64("hash_ids"), expected.read_int64("hash_ids"));

    const auto want = expected.at("output").copy_as<float>();
    const auto hidden =
        SafetensorsFile(dir + "/inputs.safetensors").at("hidden_states").copy_as<float>();
    double scale = 0;
    for (size_t i = 0; i < want.size(); ++i)
      scale = std::max(scale, std::abs(double(want[i]) - double(hidden[i])));
    for (const std::string chunk : {"0", "1", "5"}) {
      SCOPED_TRACE("chunk " + chunk);
      const std::string out = tmp(name + "_out" + chunk + ".safetensors");
      const CliRun f = test::run_cli("forward" + common + " --chunk " + chunk + " -o " + out);
      ASSERT_EQ(f.status, 0) << f.output;
      const SafetensorsFile got(out);
      EXPECT_EQ(got.read_int64("hash_ids"), expected.read_int64("hash_ids"));
      const auto values = got.at("output").copy_as<float>();
      double err = 0;
      for (size_t i = 0; i < want.size(); ++i)
        err = std::max(err, std::abs(double(values[i]) - double(want[i])));
      EXPECT_LT(err / scale, 1e-3);
      // The same rows served by a tier from the shards as shipped (hf:) and from a packed copy
      // (file:): the output equals the resident forward's exactly.
      const std::string packed = tmp(name + ".engram");
      if (chunk == "0") {
        const CliRun p =
            test::run_cli("pack --model " + dir + "/model --layer " + layer + " -o " + packed);
        ASSERT_EQ(p.status, 0) << p.output;
      }
      for (const std::string& uri :
           {"hf:" + dir + "/model?layer=" + layer + "&cache_mb=1", "file:" + packed}) {
        SCOPED_TRACE(uri);
        const std::string tiered = tmp(name + "_tier" + chunk + ".safetensors");
        const CliRun t = test::run_cli("forward" + common + " --chunk " + chunk + " --table '" +
                                       uri + "' -o " + tiered);
        ASSERT_EQ(t.status, 0) << t.output;
        EXPECT_EQ(SafetensorsFile(tiered).at("output").copy_as<float>(), values);
      }
    }
  }
}

// bench --model: the checkpoint's own FP8 layer, its throughput and the split of a forward.
TEST(ModelCli, BenchRunsTheCheckpointsLayer) {
  const std::string dir = test::data_path("v41/golden/model");
  const CliRun r = test::run_cli("bench --model " + dir + " --lookup " + kLookup +
                                 " --layer 3 --batch 2 --seqlen 8 --reps 3 --threads 1 --profile");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("model " + dir + " layer 3 batch 2 seqlen 8 threads 1 wkv fp8"));
  EXPECT_THAT(r.output, HasSubstr("tokens/s "));
  EXPECT_THAT(r.output, HasSubstr("non-GEMM share"));
  const CliRun bad =
      test::run_cli("bench --model " + dir + " --lookup " + kLookup + " --dtype bf16");
  EXPECT_EQ(bad.status, 2) << bad.output;
}

TEST(ModelCli, HelpAndErrors) {
  for (const char* cmd : {"info", "hash", "forward"}) {
    const CliRun r = test::run_cli(std::string(cmd) + " --help");
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("usage: engram " + std::string(cmd)));
  }
  const std::string dir = test::data_path("v41/golden");
  const CliRun r =
      test::run_cli("hash --model " + dir + "/model --layer 2 --input " + dir +
                    "/inputs.safetensors -o " + tmp("x.safetensors") + " --lookup " + kLookup);
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, HasSubstr("engram: error: "));
  EXPECT_THAT(r.output, HasSubstr("layer 2 is not in layer_ids [1, 3]"));
}

}  // namespace
}  // namespace engram
