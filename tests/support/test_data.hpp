// Test helpers: paths of the committed test data.
#pragma once

#include <string>

namespace engram::test {

/// Absolute path of a file under tests/data.
inline std::string data_path(const std::string& relative) {
  return std::string(ENGRAM_TEST_DATA_DIR) + "/" + relative;
}

}  // namespace engram::test
