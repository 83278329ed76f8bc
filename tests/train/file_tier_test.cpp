// Tables and optimiser state in files (Placement): steps equal the RAM run bit for bit, flush()
// leaves exactly the RAM values in the files, an existing file is reused (its values carry over)
// and a file of the wrong size is refused, naming it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engram/train/optimizers.hpp"
#include "engram/train/trainable_table.hpp"
#include "support/error_of.hpp"
#include "support/random.hpp"

namespace engram::train {
namespace {

constexpr int64_t kRows = 20000, kDim = 12;  // 960 KB: many pages, few touched

std::vector<float> file_floats(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

class FileTier : public ::testing::Test {
 protected:
  FileTier()
      : dir_(std::filesystem::temp_directory_path() /
             ("engram_file_tier_" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(dir_);
  }
  ~FileTier() override { std::filesystem::remove_all(dir_); }

  SparseRowGrad grad(int step) const {
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < 300; ++i) ids.push_back((i * 7919 + step * 104729) % kRows);
    return accumulate_row_grads<float>(ids, test::normal_values(ids.size() * kDim, 10 + step),
                                       kDim);
  }

  std::filesystem::path dir_;
};

TEST_F(FileTier, SparseAdamInFilesEqualsRamAndFlushesTouchedPages) {
  const std::vector<float> initial = test::normal_values(kRows * kDim, 3);
  TrainableTable ram(initial, kRows, kDim);
  SparseAdam ram_adam({.lr = 1e-2}, kRows, kDim);
  const Placement placement{(dir_ / "table").string()};
  {
    TrainableTable file(kRows, kDim, placement);
    file.assign(initial);
    SparseAdam file_adam({.lr = 1e-2}, kRows, kDim, placement);
    for (int s = 0; s < 3; ++s) {
      ram_adam.step(ram, grad(s));
      file_adam.step(file, grad(s));
    }
    EXPECT_TRUE(std::equal(ram.weights().begin(), ram.weights().end(), file.weights().begin()));
    file.flush();
    file_adam.flush();
  }
  const auto weights = file_floats(placement.path + ".weight");
  const auto exp_avg_sq = file_floats(placement.path + ".exp_avg_sq");
  EXPECT_TRUE(std::equal(weights.begin(), weights.end(), ram.weights().begin()));
  EXPECT_EQ(weights.size(), ram.weights().size());
  EXPECT_TRUE(std::equal(exp_avg_sq.begin(), exp_avg_sq.end(), ram_adam.exp_avg_sq().begin()));

  // Reopened: the files' values carry over; the next step still equals RAM's.
  TrainableTable reopened(kRows, kDim, placement);
  SparseAdam reopened_adam({.lr = 1e-2}, kRows, kDim, placement);
  *reopened_adam.state().step = 3;  // the step count lives in checkpoints, not in the files
  ram_adam.step(ram, grad(3));
  reopened_adam.step(reopened, grad(3));
  EXPECT_TRUE(std::equal(ram.weights().begin(), ram.weights().end(), reopened.weights().begin()));
}

TEST_F(FileTier, RowwiseAdagradStateInAFile) {
  TrainableTable ram(kRows, kDim), file(kRows, kDim, {(dir_ / "t").string()});
  RowwiseAdagrad a({.lr = 0.1}, kRows, kDim), b({.lr = 0.1}, kRows, kDim, {(dir_ / "t").string()});
  for (int s = 0; s < 2; ++s) {
    a.step(ram, grad(s));
    b.step(file, grad(s));
  }
  b.flush();
  const auto sum = file_floats((dir_ / "t.sum").string());
  ASSERT_EQ(sum.size(), static_cast<size_t>(kRows));
  EXPECT_TRUE(std::equal(sum.begin(), sum.end(), a.sum().begin()));
}

TEST_F(FileTier, WrongSizeIsRefusedNamingTheFile) {
  const std::string path = (dir_ / "small").string();
  { TrainableTable table(10, 4, {path}); }
  const std::string message = test::error_of([&] { TrainableTable table(11, 4, {path}); });
  EXPECT_NE(message.find(path + ".weight: holds 160 bytes, expected 176"), std::string::npos)
      << message;
}

}  // namespace
}  // namespace engram::train
