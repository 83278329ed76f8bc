// engram/engram.hpp: the umbrella header. Includes every component whose dependencies are
// header-only parts of engram::engram (Eigen, nlohmann-json). Components with optional
// dependencies are included on their own:
//   engram/tokenizer/vocab_compressor.hpp  (engram::tokenizer: utf8proc, zlib)
//   engram/hashing/xxh3_policy.hpp         (engram::xxhash: xxHash)
#pragma once

#include "engram/engram_fwd.hpp"
#include "engram/error.hpp"
#include "engram/io/config.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/hashing/ngram_hasher.hpp"
