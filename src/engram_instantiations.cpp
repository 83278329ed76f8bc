// The common instantiations of engram's templates, compiled once. A consumer that defines
// ENGRAM_EXTERN_TEMPLATES (linking engram::instantiations does it) sees `extern template`
// declarations of these types in the headers and stops instantiating them in every translation unit
// that uses them. Compile this file with the same instruction-set flags as the consumer (-march):
// the kernels a header selects depend on them (ENGRAM_HAVE_AVX512, ENGRAM_HASHING_HAVE_AVX512).
//
// It also holds the one definition of the non-template entry points that compiled mode keeps out
// of the headers (engram/detail/compiled.hpp): EngramConfig::load, SafetensorsFile's parser and
// save_safetensors, PackedTableInfo's JSON, CompressionTable's loader, open_table and its schemes.
#define ENGRAM_EXTERN_TEMPLATES 1
#define ENGRAM_COMPILING_INSTANTIATIONS 1

#include "engram/hashing/ngram_hasher.hpp"
#include "engram/io/config.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/layer/engram_stack.hpp"
#include "engram/memory/packed_format.hpp"
#include "engram/memory/tiers/open_table.hpp"
#include "engram/nn/any_linear.hpp"
#include "engram/nn/gate.hpp"
#include "engram/nn/linear.hpp"
#include "engram/nn/rms_norm.hpp"
#include "engram/nn/short_conv.hpp"
#include "engram/tokenizer/compression_table.hpp"

namespace engram {

namespace detail {
bool instantiations_use_openmp() noexcept {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}
}  // namespace detail

// hashing/
template class NgramHasherT<NumpyMultiplyXor>;

// nn/
template class LinearT<float>;
template class LinearT<float, BFloat16>;
template class AnyLinearT<float>;
template class RmsNormT<float>;
template class ShortConvT<float>;
template class EngramGateT<float>;
template class FusedGateT<float>;

// layer/: the two float layers with the reference hash (their members are defined out of the class
// body, so this is their only copy in a program built with the switch).
template class EngramLayerT<float, DemoBlock, NumpyMultiplyXor>;
template class EngramLayerT<float, V41Block, NumpyMultiplyXor>;
// The model-level seam over them (tiers behind AnyTier, look-ahead prefetch).
template class EngramStackT<EngramLayerT<float, DemoBlock, NumpyMultiplyXor>>;
template class EngramStackT<EngramLayerT<float, V41Block, NumpyMultiplyXor>>;

}  // namespace engram
