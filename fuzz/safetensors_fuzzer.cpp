// Fuzzes the safetensors reader: any file either opens with every tensor in bounds or throws
// engram::Error. Touches every byte of every tensor so ASan sees any out-of-bounds view.
#include <cstdint>

#include "engram/io/safetensors.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = engram::fuzz::write_input(data, size, ".safetensors");
  try {
    engram::SafetensorsFile f(path);
    unsigned sum = 0;
    for (const auto& t : f.tensors())
      for (std::byte b : t.bytes) sum += static_cast<unsigned>(b);
    for (const auto& t : f.tensors())
      if (t.dtype == engram::DType::kI64 || t.dtype == engram::DType::kI32)
        sum += static_cast<unsigned>(f.read_int64(t.name).size());
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const engram::Error&) {
  }
  return 0;
}
