// engram/engram_fwd.hpp: forward declarations and the common aliases of the engram library.
#pragma once

#include <cstdint>

namespace engram {

class Error;
struct EngramConfig;
enum class Variant;
class SafetensorsFile;
struct TensorView;
enum class DType;

}  // namespace engram
