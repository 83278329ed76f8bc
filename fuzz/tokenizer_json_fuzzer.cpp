// Fuzzes the tokenizer.json reader and the vocabulary compressor: any bytes give a table or an
// engram::Error, never a crash or an out-of-bounds access.
#include <cstdint>

#include "engram/tokenizer/vocab_compressor.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = engram::fuzz::write_input(data, size, ".tokenizer.json");
  try {
    const auto table = engram::compress_tokenizer_json(path);
    volatile int64_t sink = table.compressed_size();
    (void)sink;
  } catch (const engram::Error&) {
  }
  return 0;
}
