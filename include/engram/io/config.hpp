// engram/io/config.hpp: EngramConfig::load(path): reads and validates the reference's JSON config
// file (fields and checks: engram/io/config_json.hpp, which also holds from_json and to_json and
// is included here in header-only mode). In compiled mode (engram/detail/compiled.hpp) load is
// only declared here and nlohmann-json stays out of the translation unit. Errors name the file and
// the field. Stateless; thread-safe.
//
//   const auto config = engram::EngramConfig::load("config.json");
#pragma once

#include <string>

#include "engram/config.hpp"
#include "engram/detail/compiled.hpp"

#if ENGRAM_DEFINITIONS
#include "engram/io/config_json.hpp"

namespace engram {

ENGRAM_INLINE EngramConfig EngramConfig::load(const std::string& path) {
  return from_json(detail::read_json_file(path, "config"), path);
}

}  // namespace engram
#endif
