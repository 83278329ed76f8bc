// engram/memory/tiers/any_tier.hpp: AnyTier, a type-erased RowTier, so that where a table lives
// (a packed file, a cache in front of it, a remote pool; open_table.hpp) can be chosen at run
// time by a URI while the prefetcher and the layers stay templates.
//
// Cost: one virtual call per batch (fetch), never per row; the wrapped tier's own loops are
// unchanged. AnyTier owns its tier (moved in, or built in place by AnyTier::make<T>(args...)).
//
// Guarantees: exactly the wrapped tier's (row_tier.hpp: all or nothing, its thread safety).
// target<T>() gives the wrapped tier back for its own counters (e.g. CachedTier::stats()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "engram/error.hpp"
#include "engram/memory/tiers/row_tier.hpp"

namespace engram {

/// A RowTier of any concrete type, held by pointer (see the banner).
class AnyTier {
 public:
  /// Wraps (and owns) `tier`.
  template <RowTier T>
  explicit AnyTier(std::unique_ptr<T> tier) {
    ENGRAM_CHECK(tier != nullptr, "AnyTier: null tier");
    model_ = std::make_unique<Model<T>>(std::move(tier));
    num_rows_ = model_->num_rows();
    row_bytes_ = model_->row_bytes();
  }
  /// Builds a T in place from `args`.
  template <RowTier T, class... Args>
  static AnyTier make(Args&&... args) {
    return AnyTier(std::make_unique<T>(std::forward<Args>(args)...));
  }

  AnyTier(AnyTier&&) noexcept = default;
  AnyTier& operator=(AnyTier&&) noexcept = default;

  int64_t num_rows() const noexcept { return num_rows_; }
  int64_t row_bytes() const noexcept { return row_bytes_; }
  std::string describe() const { return model_->describe(); }
  /// The wrapped tier's fetch (row_tier.hpp).
  FetchReport fetch(std::span<const int64_t> ids, std::span<std::byte> out) {
    return model_->fetch(ids, out);
  }

  /// The wrapped tier if it is a T, else null.
  template <class T>
  T* target() noexcept {
    auto* model = dynamic_cast<Model<T>*>(model_.get());
    return model != nullptr ? model->tier.get() : nullptr;
  }
  template <class T>
  const T* target() const noexcept {
    const auto* model = dynamic_cast<const Model<T>*>(model_.get());
    return model != nullptr ? model->tier.get() : nullptr;
  }

 private:
  struct Concept {
    virtual ~Concept() = default;
    virtual int64_t num_rows() const noexcept = 0;
    virtual int64_t row_bytes() const noexcept = 0;
    virtual std::string describe() const = 0;
    virtual FetchReport fetch(std::span<const int64_t> ids, std::span<std::byte> out) = 0;
  };
  template <class T>
  struct Model final : Concept {
    explicit Model(std::unique_ptr<T> t) : tier(std::move(t)) {}
    int64_t num_rows() const noexcept override { return tier->num_rows(); }
    int64_t row_bytes() const noexcept override { return tier->row_bytes(); }
    std::string describe() const override { return tier->describe(); }
    FetchReport fetch(std::span<const int64_t> ids, std::span<std::byte> out) override {
      return tier->fetch(ids, out);
    }
    std::unique_ptr<T> tier;
  };

  std::unique_ptr<Concept> model_;
  int64_t num_rows_ = 0;
  int64_t row_bytes_ = 0;
};

static_assert(RowTier<AnyTier>);

}  // namespace engram
