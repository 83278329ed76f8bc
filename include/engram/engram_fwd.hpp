// engram/engram_fwd.hpp: forward declarations of the core and io types, so that a header can name
// them (pointers, references, declarations) without including their definitions. Each type is
// defined in its own header (error.hpp, config.hpp, io/safetensors.hpp).
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
