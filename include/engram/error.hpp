// engram/error.hpp: the one exception type of the library and the ENGRAM_CHECK macro.
//
// Every error the library reports at its API boundary is an engram::Error (a std::runtime_error).
// Messages name the file, tensor or field at fault, what was expected and what was found.
// Hot kernels are noexcept; inputs are validated before they are entered.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace engram {

/// The exception thrown for every invalid input, file or configuration.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

template <class... Args>
[[nodiscard]] std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <class... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(concat(std::forward<Args>(args)...));
}

}  // namespace detail
}  // namespace engram

/// Throws engram::Error with the streamed message parts when `cond` is false.
#define ENGRAM_CHECK(cond, ...)                       \
  do {                                                \
    if (!(cond)) ::engram::detail::fail(__VA_ARGS__); \
  } while (false)
