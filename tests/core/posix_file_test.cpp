// detail::AtomicFile: a file appears at its path complete or not at all; concurrent writers of one
// path leave one writer's whole file and no temporaries; failures name the path and remove the
// temporary.
#include "engram/detail/posix_file.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "support/error_of.hpp"

namespace engram {
namespace {

using ::testing::HasSubstr;

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("engram_atomic_" + std::to_string(::getpid()) + "_" + info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_))
      names.push_back(e.path().filename().string());
    return names;
  }
  static std::string contents(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  std::filesystem::path dir_;
};

TEST_F(AtomicFileTest, CommitPublishesTheWholeFileAndAbandoningLeavesTheOldOne) {
  const std::string path = (dir_ / "out.bin").string();
  {
    detail::AtomicFile file(path);
    EXPECT_THAT(file.temp_path(), HasSubstr(path + ".tmp."));
    file.write("old", 3);
    EXPECT_FALSE(std::filesystem::exists(path));
    file.commit();
    EXPECT_THAT(test::error_of([&] { file.commit(); }), HasSubstr("already committed"));
  }
  EXPECT_EQ(contents(path), "old");
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms(0644));
  {
    detail::AtomicFile file(path);
    file.write("new contents", 12);
    EXPECT_TRUE(std::filesystem::exists(file.temp_path()));
  }  // destroyed before commit(): as if the writer was interrupted
  EXPECT_EQ(contents(path), "old");
  EXPECT_EQ(entries(), std::vector<std::string>{"out.bin"});
}

TEST_F(AtomicFileTest, ConcurrentWritersLeaveOneCompleteFileAndNoTemporaries) {
  const std::string path = (dir_ / "shared.bin").string();
  constexpr int kWriters = 6;
  constexpr size_t kBytes = size_t{1} << 20;
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::vector<std::thread> threads;
    std::vector<int> committed(kWriters, 0);
    for (int w = 0; w < kWriters; ++w)
      threads.emplace_back([&, w] {
        const std::string data(kBytes, static_cast<char>('a' + w));
        detail::AtomicFile file(path);
        for (size_t at = 0; at < kBytes; at += 4096) file.write(data.data() + at, 4096);
        file.commit();
        committed[static_cast<size_t>(w)] = 1;
      });
    for (auto& t : threads) t.join();
    EXPECT_EQ(committed, std::vector<int>(kWriters, 1));
    const std::string got = contents(path);
    ASSERT_EQ(got.size(), kBytes);
    EXPECT_EQ(got, std::string(kBytes, got[0])) << "bytes of two writers mixed";
    EXPECT_EQ(entries(), std::vector<std::string>{"shared.bin"});
  }
}

TEST_F(AtomicFileTest, ErrorsNameThePathAndLeaveNothing) {
  const std::string missing = (dir_ / "no_such_dir" / "x.bin").string();
  EXPECT_THAT(test::error_of([&] { detail::AtomicFile file(missing); }),
              HasSubstr(missing + ": cannot create a temporary file beside it: "));
  // The rename fails when the final path is a non-empty directory: the temporary goes.
  const std::filesystem::path blocked = dir_ / "blocked";
  std::filesystem::create_directories(blocked / "inside");
  std::string temp;
  EXPECT_THAT(test::error_of([&] {
                detail::AtomicFile file(blocked.string());
                temp = file.temp_path();
                file.write("x", 1);
                file.commit();
              }),
              HasSubstr("rename to the final path failed"));
  EXPECT_FALSE(temp.empty());
  EXPECT_FALSE(std::filesystem::exists(temp));
  EXPECT_EQ(entries(), std::vector<std::string>{"blocked"});
}

}  // namespace
}  // namespace engram
