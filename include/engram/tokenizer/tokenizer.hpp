// engram/tokenizer/tokenizer.hpp: umbrella header of the tokenizer component (engram::tokenizer:
// utf8proc + zlib). Reading tokenizer.json, its decoders and normalisers, and the vocabulary
// compression table, all bit-exact with Hugging Face `tokenizers` 0.23.2.
//
//   engram::CompressionTable table = engram::compress_tokenizer_json("tokenizer.json.gz");
//   table.save("lookup.safetensors");   // I64 "lookup" [vocab_size]
//   int64_t compressed = table[token_id];
#pragma once

#include "engram/tokenizer/decoder.hpp"
#include "engram/tokenizer/normalizer.hpp"
#include "engram/tokenizer/tokenizer_json.hpp"
#include "engram/tokenizer/vocab_compressor.hpp"
