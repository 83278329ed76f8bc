// Test helper: the message of the engram::Error a callable throws.
#pragma once

#include <functional>
#include <string>

#include "engram/error.hpp"

namespace engram::test {

/// Runs f and returns what() of the engram::Error it throws, or "(no error)" when it returns
/// normally (so an expected message never matches a call that did not fail).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace engram::test
