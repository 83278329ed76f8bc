// cli/model_commands.hpp: the `engram` commands on a released V4.1 model directory
// (layer/engram_model.hpp), defined in model_commands.cpp:
//
//   engram info --model DIR|CONFIG.json
//   engram hash --model DIR [--lookup LOOKUP.safetensors] [--layer L] --input IN -o OUT
//   engram forward --model DIR [--lookup LOOKUP.safetensors] [--layer L] [--chunk K]
//                  [--table URI [--cache-mb M]] --input IN -o OUT
//   engram bench --model DIR ... (bench_command.cpp, through open_model)
//
// IN holds input_ids I64 [B, T] (image tokens are dead) and, for forward, hidden_states F32
// [B, T, hc, hidden]; hash writes hash_ids I64 [B, T, (N-1)*H] (rows within each head's table),
// forward writes output F32 [B, T, hc, hidden] (residual included) and hash_ids. info needs only
// config.json: per Engram layer its rows, primes, multipliers, table bytes and the shards holding
// it (when the directory has an index). forward --table serves the rows from a tier instead of the
// mapped table (e.g. `hf:DIR?layer=L`, the shards themselves, or a packed `file:T.engram`), the
// next chunk's rows fetched while the current one runs; the output equals the resident forward's.
#pragma once

#include <cstdint>

#include "cli/args.hpp"
#include "engram/layer/engram_model.hpp"

namespace engram::cli {

/// True when argv[first..) has --model (the released-directory form of hash/forward).
bool has_model_option(int argc, char** argv, int first);

/// --model DIR [--lookup L] [--layer L]: the directory's layer (default its first); `*layer` is
/// set to the layer id.
EngramModel open_model(const Args& args, int64_t* layer, bool table_in_tier = false);

/// `engram hash --model ...` and `engram forward --model ...`.
int model_hash(int argc, char** argv);
int model_forward(int argc, char** argv);

}  // namespace engram::cli
