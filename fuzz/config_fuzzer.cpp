// Fuzzes the config reader: any bytes give a validated EngramConfig or an engram::Error.
#include <cstdint>

#include "engram/io/config.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = engram::fuzz::write_input(data, size, ".json");
  try {
    const auto cfg = engram::EngramConfig::load(path);
    volatile int64_t sink = cfg.memory_dim() + cfg.vocab_size_for_order(cfg.max_ngram_size);
    (void)sink;
  } catch (const engram::Error&) {
  }
  return 0;
}
