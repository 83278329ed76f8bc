// Both Engram layers instantiated with Scalar = double against the oracle goldens: the templates
// are scalar-generic, the fast path equals the double reference to ~1e-12.

#include <gtest/gtest.h>

#include "engram/layer/engram_layer.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "layer/layer_golden.hpp"

namespace engram {
namespace {

using test::kOracleTolerance;
using test::load_layer_golden;
using test::oracle_error;
using test::relative_max_error;

template <class Layer>
void check_double_layer(const char* name) {
  SCOPED_TRACE(name);
  const auto g = load_layer_golden(name);
  const auto layer = Layer::load(g.config, g.weights, {.prefix = "", .column_rows = g.primes});
  const std::vector<double> hidden(g.hidden.begin(), g.hidden.end());
  std::vector<double> out(g.expected.size()), ref(g.expected.size());
  typename Layer::Workspace ws;
  layer.forward(g.hash_ids, hidden, g.batch, g.seq_len, out, ws);
  layer.forward_reference(g.hash_ids, hidden, g.batch, g.seq_len, ref);
  EXPECT_LT(oracle_error(out, g.expected), kOracleTolerance);
  EXPECT_LT(oracle_error(ref, g.expected), kOracleTolerance);
  EXPECT_LT(relative_max_error(out, ref), 1e-12);
}

TEST(LayerDouble, DemoMatchesOracle) {
  for (const char* name : {"demo_a", "demo_b", "demo_c", "demo_d"})
    check_double_layer<EngramLayerT<double>>(name);
}

TEST(LayerDouble, FusedMatchesOracle) {
  for (const char* name : {"fused_a", "fused_b", "fused_c"})
    check_double_layer<FusedEngramLayerT<double>>(name);
}

}  // namespace
}  // namespace engram
