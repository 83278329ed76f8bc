// engram/engram.hpp: the umbrella header. Includes every component whose dependencies are
// header-only parts of engram::engram (Eigen, nlohmann-json). Components with optional
// dependencies are included on their own:
//   engram/tokenizer/vocab_compressor.hpp  (engram::tokenizer: utf8proc, zlib)
//   engram/hashing/xxh3_policy.hpp         (engram::xxhash: xxHash)
//   engram/memory/tiers/*.hpp, packed_table.hpp, prefetch.hpp, tiered_memory.hpp
//                                          (engram::xxhash, engram::uring)
//   engram/memory/tiers/memcached_store.hpp (engram::memcached: libmemcached)
// engram::blas (OpenBLAS) changes no header: it moves nn/linear.hpp's products to s/dgemm where the
// AVX-512 panel kernel is not built (double, or no AVX-512).
// Compile time: define ENGRAM_EXTERN_TEMPLATES (linking engram::instantiations does) to take the
// common instantiations from src/engram_instantiations.cpp instead of every translation unit.
#pragma once

#include "engram/config.hpp"
#include "engram/engram_fwd.hpp"
#include "engram/error.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/io/config.hpp"
#include "engram/io/config_json.hpp"
#include "engram/io/hf_config.hpp"
#include "engram/io/model_directory.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "engram/layer/load.hpp"
#include "engram/memory/codec.hpp"
#include "engram/memory/embedding_table.hpp"
#include "engram/nn/any_linear.hpp"
#include "engram/nn/bf16_dot.hpp"
#include "engram/nn/fp8_linear.hpp"
#include "engram/nn/gate.hpp"
#include "engram/nn/linear.hpp"
#include "engram/nn/rms_norm.hpp"
#include "engram/nn/short_conv.hpp"
