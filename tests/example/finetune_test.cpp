// The fine-tuning example (examples/finetune.cpp) on a 24,576-token slice of the Bible: after
// training, the Engram-enabled model's validation loss is below the frozen backbone's, and two
// runs with the same seed print the same losses.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_support.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/tokenizer/vocab_compressor.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using ::testing::HasSubstr;

const std::string kFinetune = ENGRAM_FINETUNE_PATH;
const std::string kArgs =
    " --corpus " + test::data_path("hashing/kjv_slice.safetensors") + " --lookup " +
    test::data_path("tokenizer/deepseek_v3/lookup.safetensors") +
    " --tokens 24576 --seqlen 128 --pretrain-epochs 2 --table-rows 5003 --seed 7";

/// Runs finetune with `args`, stdout only (the progress bar and timing go to stderr).
test::CliRun run_stdout(const std::string& args) {
  return test::shell("{ " + kFinetune + args + " 2>/dev/null; }");
}

/// The rows of the per-epoch loss table: epoch, train/val with Engram, train/val with it off.
std::vector<std::vector<double>> loss_rows(const std::string& output) {
  std::vector<std::vector<double>> rows;
  std::istringstream in(output);
  std::string line;
  bool in_table = false;
  while (std::getline(in, line)) {
    if (line.rfind("epoch ", 0) == 0) {
      in_table = true;
      continue;
    }
    if (!in_table) continue;
    std::istringstream fields(line);
    std::vector<double> row(5);
    if (!(fields >> row[0] >> row[1] >> row[2] >> row[3] >> row[4])) break;
    rows.push_back(row);
  }
  return rows;
}

TEST(FinetuneExample, EngramBeatsTheFrozenBackboneAndRepeats) {
  const std::string csv = test::temp_file("finetune_test", "loss.csv");
  const std::string checkpoint = test::temp_file("finetune_test", "engram.safetensors");
  const test::CliRun first =
      run_stdout(kArgs + " --epochs 2 --csv " + csv + " --save " + checkpoint);
  ASSERT_EQ(first.status, 0) << first.output;
  const auto rows = loss_rows(first.output);
  ASSERT_EQ(rows.size(), 3u) << first.output;  // epochs 0, 1, 2
  // Before training the Engram output is zero: both models have the same loss.
  EXPECT_DOUBLE_EQ(rows[0][2], rows[0][4]) << first.output;
  // The claim of the example: held-out loss with Engram below the backbone's alone.
  EXPECT_LT(rows[2][2], rows[2][4]) << first.output;
  EXPECT_LT(rows[2][1], rows[2][3]) << first.output;  // and on the training text
  // The CSV holds the same points.
  std::ifstream in(csv);
  std::string header;
  std::getline(in, header);
  EXPECT_EQ(header, "epoch,train_engram,val_engram,train_off,val_off");
  int lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  EXPECT_EQ(lines, 3);

  const test::CliRun second = run_stdout(kArgs + " --epochs 2");
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_EQ(first.output, second.output);

  // The saved layer holds its optimiser state and loads in the inference loader.
  const auto file = std::make_shared<const SafetensorsFile>(checkpoint);
  for (const char* name :
       {"optimizer.multi_head_embedding.embedding.weight.exp_avg",
        "optimizer.value_proj.weight.exp_avg_sq", "optimizer.norm1.0.weight.step"})
    EXPECT_NE(file->find(name), nullptr) << name;
  EngramConfig config;  // finetune's layer at the options above
  config.engram_vocab_size = {5003, 5003};
  config.max_ngram_size = 3;
  config.n_head_per_ngram = 4;
  config.n_embed_per_ngram = 64;
  config.layer_ids = {0};
  config.hidden_size = 64;
  config.hc_mult = 1;
  const auto lookup =
      CompressionTable::load(test::data_path("tokenizer/deepseek_v3/lookup.safetensors"));
  const auto hasher = std::make_shared<const NgramHasher>(config, lookup.lookup(), 0);
  const auto layer = EngramLayer::load(config, file, hasher);
  // Trained: the value projection (zero at the start) has moved.
  const TensorView* value_proj = file->find("value_proj.weight");
  ASSERT_NE(value_proj, nullptr);
  const std::vector<float> value = value_proj->copy_as<float>();
  EXPECT_TRUE(std::any_of(value.begin(), value.end(), [](float v) { return v != 0.0f; }));
  const std::vector<int64_t> ids(16, 100);
  std::vector<float> hidden(16 * 64, 1.0f), out(hidden.size());
  EngramLayer::Workspace ws;
  layer.forward_tokens(ids, hidden, 1, 16, out, ws);
  EXPECT_GT(std::abs(out[64 * 15]), 0.0f);
}

TEST(FinetuneExample, HelpAndUsageErrors) {
  const test::CliRun help = test::shell(kFinetune + " --help");
  EXPECT_EQ(help.status, 0);
  EXPECT_THAT(help.output, HasSubstr("--table-optimizer"));
  const test::CliRun unknown = test::shell(kFinetune + kArgs + " --no-such-flag");
  EXPECT_EQ(unknown.status, 2) << unknown.output;
  EXPECT_THAT(unknown.output, HasSubstr("unknown option --no-such-flag"));
  const test::CliRun bad_lr = test::shell(kFinetune + kArgs + " --lr fast");
  EXPECT_EQ(bad_lr.status, 2) << bad_lr.output;
  const test::CliRun missing =
      test::shell(kFinetune + " --corpus /nonexistent.safetensors" + " --lookup x --epochs 1");
  EXPECT_EQ(missing.status, 1) << missing.output;
  EXPECT_THAT(missing.output, HasSubstr("finetune: error: "));
}

#ifdef ENGRAM_CLI_PATH
TEST(FinetuneExample, EngramTrainIsTheSameExample) {
  const test::CliRun help = test::run_cli("train --help");
  EXPECT_EQ(help.status, 0) << help.output;
  EXPECT_THAT(help.output, HasSubstr("--table-optimizer"));
  const std::string args = kArgs + " --epochs 1";
  const test::CliRun alias =
      test::shell("{ " + std::string(ENGRAM_CLI_PATH) + " train" + args + " 2>/dev/null; }");
  ASSERT_EQ(alias.status, 0) << alias.output;
  EXPECT_EQ(alias.output, run_stdout(args).output);
}
#endif

#ifdef ENGRAM_FINETUNE_HAVE_PNG
TEST(FinetuneExample, WritesAPng) {
  const std::string png = test::temp_file("finetune_test", "loss.png");
  const test::CliRun r = run_stdout(kArgs + " --epochs 1 --plot " + png);
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream in(png, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  EXPECT_EQ(std::string(magic + 1, 3), "PNG");
}
#endif

}  // namespace
}  // namespace engram
