// engram/layer/load.hpp: load either Engram layer block from a checkpoint, chosen by the config's
// "variant" field ("demo" -> EngramLayerT<Scalar, DemoBlock>, "fused" -> V41EngramLayerT).
//
// The result is a std::variant; call it with std::visit, e.g.
//   auto layer = engram::load_engram_layer(config, file, hasher, {.prefix = "layers.15.engram."});
//   std::visit([&](auto& l) { l.forward_tokens(ids, hidden, B, T, out, ws); }, layer);
// Both alternatives are one template (EngramLayerT) and share every signature and the Workspace
// and State types.
// Errors: as the variants' loaders (checkpoint.hpp); a fused checkpoint needs column_rows or a
// hasher.
#pragma once

#include <memory>
#include <variant>

#include "engram/hashing/ngram_hasher.hpp"
#include "engram/io/config.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/checkpoint.hpp"
#include "engram/layer/engram_layer.hpp"

namespace engram {

/// One Engram layer of either variant.
template <class Scalar = float, NgramHashPolicy HashPolicy = NumpyMultiplyXor>
using AnyEngramLayerT =
    std::variant<EngramLayerT<Scalar, DemoBlock, HashPolicy>, V41EngramLayerT<Scalar, HashPolicy>>;
using AnyEngramLayer = AnyEngramLayerT<>;

/// Loads the variant config.variant names (hash-id front end only).
template <class Scalar = float, NgramHashPolicy HashPolicy = NumpyMultiplyXor>
AnyEngramLayerT<Scalar, HashPolicy> load_engram_layer(const EngramConfig& config,
                                                      std::shared_ptr<const SafetensorsFile> file,
                                                      const CheckpointOptions& options = {}) {
  if (config.variant == Variant::kFused)
    return V41EngramLayerT<Scalar, HashPolicy>::load(config, std::move(file), options);
  return EngramLayerT<Scalar, DemoBlock, HashPolicy>::load(config, std::move(file), options);
}

/// Loads the variant config.variant names with a token-id front end.
template <class Scalar = float, NgramHashPolicy HashPolicy = NumpyMultiplyXor>
AnyEngramLayerT<Scalar, HashPolicy> load_engram_layer(
    const EngramConfig& config, std::shared_ptr<const SafetensorsFile> file,
    std::shared_ptr<const NgramHasherT<HashPolicy>> hasher, CheckpointOptions options = {}) {
  if (config.variant == Variant::kFused)
    return V41EngramLayerT<Scalar, HashPolicy>::load(config, std::move(file), std::move(hasher),
                                                     std::move(options));
  return EngramLayerT<Scalar, DemoBlock, HashPolicy>::load(config, std::move(file),
                                                           std::move(hasher), std::move(options));
}

}  // namespace engram
