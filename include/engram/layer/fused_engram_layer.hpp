// engram/layer/fused_engram_layer.hpp: the former home of FusedEngramLayerT, now
// V41EngramLayerT = EngramLayerT<Scalar, V41Block, HashPolicy> (engram_layer.hpp,
// blocks/v41_block.hpp). Kept so existing includes compile.
#pragma once

#include "engram/layer/engram_layer.hpp"
