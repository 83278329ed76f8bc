// Smoke tests of the examples a user runs first: `engram demo`, `engram bench` and `mini_model`,
// each at a small size (seconds), checking the shape of its output, the figures it derives from
// its own run (token counts, the demo's decoding check, tokens/s) and its exit status on failure.
// (`engram bench-offload` runs end to end in tier_cli_test.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_support.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using test::CliRun;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;

const std::string kConfig = test::data_path("layer/demo_a/config.json");
const std::string kFusedConfig = test::data_path("layer/fused_a/config.json");
const std::string kLookup = test::data_path("tokenizer/deepseek_v3/lookup.safetensors");
const std::string kTokenizer = test::data_path("tokenizer/deepseek_v3/tokenizer.json.gz");
const std::string kCorpus = test::data_path("hashing/kjv_slice.safetensors");  // 24,576 ids

std::string cache_dir() { return test::temp_file("engram_smoke", "cache"); }

/// The first match of `pattern`'s group `group` in `text`, or "" (and a failure).
std::string capture(const std::string& text, const std::string& pattern, int group = 1) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex(pattern))) {
    ADD_FAILURE() << "no line matches /" << pattern << "/ in:\n" << text;
    return "";
  }
  return m[group].str();
}

double number(const std::string& s) { return s.empty() ? NAN : std::strtod(s.c_str(), nullptr); }

TEST(Smoke, DemoRunsAndItsDecodingCheckPasses) {
  const CliRun r =
      test::run_cli("demo --tokenizer " + kTokenizer + " --corpus " + kCorpus + " --config " +
                    kConfig + " --tokens 8192 --layer-tokens 2048" + " --cache-dir " + cache_dir());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("vocab 128815 -> 98627 (reduction 23.4%)"));
  EXPECT_THAT(r.output, ContainsRegex("8192 tokens, N=3, 4 heads, layer 1\\)"));
  EXPECT_THAT(r.output, HasSubstr(std::to_string(8192 * 8) + " row ids"));
  // five bigrams, each with a count and three rows
  const std::regex bigram(" +[0-9]+ x \"[^\"]*\" +-> rows [0-9]+ [0-9]+ [0-9]+\n");
  EXPECT_EQ(std::distance(std::sregex_iterator(r.output.begin(), r.output.end(), bigram),
                          std::sregex_iterator()),
            5)
      << r.output;
  EXPECT_GT(number(capture(r.output,
                           "2048 tokens in sequences of 2048: [0-9.]+ s, ([0-9.]+) "
                           "tokens/s")),
            0);
  // the decoding check: the relative difference it prints is within the bound it states
  const std::string line = capture(
      r.output, "token-by-token decoding of the first 256 tokens vs whole sequence: (.*)\n");
  const double relative = number(capture(line, "relative ([0-9.e+-]+)"));
  EXPECT_LE(relative, 1e-5) << line;
  EXPECT_THAT(line, HasSubstr("(bound 1e-05)"));
  EXPECT_THAT(r.output, HasSubstr("demo: all checks passed"));
}

TEST(Smoke, DemoFailuresAreErrorsWithStatus) {
  const CliRun missing = test::run_cli("demo --tokenizer " + kTokenizer +
                                       " --corpus no_such_corpus.safetensors --config " + kConfig);
  EXPECT_EQ(missing.status, 1) << missing.output;
  EXPECT_THAT(missing.output, HasSubstr("engram: error: "));
  EXPECT_THAT(missing.output, HasSubstr("no_such_corpus.safetensors"));
  const CliRun usage = test::run_cli("demo --tokenizer " + kTokenizer + " --corpus " + kCorpus +
                                     " --config " + kConfig + " --layer-tokens 0");
  EXPECT_EQ(usage.status, 2) << usage.output;
  EXPECT_THAT(usage.output, HasSubstr("--layer-tokens must be in [1, "));
}

TEST(Smoke, BenchPrintsItsConfigAndThroughput) {
  for (const auto& [config, dtype] :
       {std::pair{kConfig, "f32"}, std::pair{kConfig, "bf16"}, std::pair{kFusedConfig, "f32"}}) {
    SCOPED_TRACE(config + " " + dtype);
    const CliRun r = test::run_cli("bench --config " + config + " --lookup " + kLookup +
                                   " --batch 2 --seqlen 64 --threads 1 --reps 1 --dtype " + dtype +
                                   " --cache-dir " + cache_dir());
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("batch 2 seqlen 64 threads 1 dtype " + std::string(dtype)));
    // the last stdout line (stderr, merged, may come before or after it)
    const double tokens_per_s = number(capture(r.output, "(^|\n)tokens/s ([0-9.]+)\n", 2));
    EXPECT_GT(tokens_per_s, 0);
    EXPECT_TRUE(std::isfinite(tokens_per_s));
  }
  const CliRun bad = test::run_cli("bench --config " + kConfig + " --lookup " + kLookup +
                                   " --layer 7 --cache-dir " + cache_dir());
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("engram: error: "));
}

#ifdef ENGRAM_MINI_MODEL_PATH
TEST(Smoke, MiniModelRunsEveryTokenThroughEveryBlock) {
  const CliRun r = test::shell(std::string(ENGRAM_MINI_MODEL_PATH) + " --lookup " + kLookup +
                               " --corpus " + kCorpus + " --config " + kConfig +
                               " --blocks 2 --tokens 1024 --seqlen 256 --cache-dir " + cache_dir());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("mini model: 2 blocks, hidden 64 x 4 branches, Engram at "
                                  "layers 1, MoE 8 experts top-2"));
  EXPECT_THAT(r.output, ContainsRegex("ran 1024 tokens \\(4 sequences of 256\\) in [0-9.]+ s"));
  // every token reaches 2 of the 8 experts in each block; Engram is in block 1 only
  for (const int block : {0, 1}) {
    SCOPED_TRACE(block);
    const std::string line = capture(r.output, "  block " + std::to_string(block) + ":(.*)\n");
    std::istringstream experts(capture(line, "tokens per expert((?: [0-9]+)+)$"));
    int64_t sum = 0, n = 0;
    for (int64_t count; experts >> count; ++n) sum += count;
    EXPECT_EQ(n, 8);
    EXPECT_EQ(sum, 2 * 1024);
    EXPECT_EQ(line.find("Engram changed the hidden state") != std::string::npos, block == 1);
  }
  const double change = number(capture(r.output, "Engram changed the hidden state by ([0-9.]+)%"));
  EXPECT_GT(change, 0);
  EXPECT_THAT(r.output, ContainsRegex("next-token cross-entropy [0-9.]+ nats \\(uniform would "
                                      "be 11\\.77\\)"));
  const CliRun bad = test::shell(std::string(ENGRAM_MINI_MODEL_PATH) + " --lookup " + kLookup +
                                 " --corpus no_such_corpus.safetensors --config " + kConfig +
                                 " --cache-dir " + cache_dir());
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("mini_model: error: "));
}
#endif

}  // namespace
}  // namespace engram
