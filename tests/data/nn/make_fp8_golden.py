#!/usr/bin/python3
"""Goldens for tests/nn/fp8_linear_test.cpp from the V4.1 oracle (/work/shared/reference/v41_ref.py).

  /usr/bin/python3 make_fp8_golden.py [REFERENCE_DIR]   (default /work/shared/reference)

Writes fp8_golden.bin, little-endian:
  f32[256]  E4M3 table (e4m3_table(): value of every code, NaN for 0x7F / 0xFF)
  u32       n, the number of activation values (a multiple of 32)
  f32[n]    x, blocks of 32 chosen to hit the rule's corners
  f32[n]    act_quant(x) as the oracle computes it
"""
import os, struct, sys
import numpy as np

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else "/work/shared/reference")
from v41_ref import E4M3, act_quant  # noqa: E402

rng = np.random.default_rng(15)
blocks = []
for exponent in [-12, -6, -3, 0, 1, 3, 6, 10]:              # ordinary blocks over many magnitudes
    blocks.append(rng.standard_normal(32) * 10.0 ** exponent)
blocks.append(np.zeros(32))                                   # all zero
blocks.append(rng.uniform(-5e-5, 5e-5, 32))                   # below the 1e-4 floor
for amax in [1e-4, 1.05e-4, 1.07e-4, 1.1e-4, 448.0 * 2.0 ** -22]:  # around the floor
    b = rng.uniform(-amax, amax, 32); b[7] = -amax; blocks.append(b)
for amax in [448.0, 448.0 * 2 ** -5, 448.0 * 2 ** 3, 448.0 * (1 + 2 ** -20), 448.0 * (1 - 2 ** -20)]:
    b = rng.uniform(-amax, amax, 32); b[3] = amax; b[20] = -amax; blocks.append(b)  # +-448 edges
# ties at s = 1 (amax 448): midpoints of the E4M3 grid, normal and subnormal, both signs
grid = np.unique(np.abs(E4M3[np.isfinite(E4M3)]).astype(np.float64))
mids = (grid[:-1] + grid[1:]) / 2
tie = np.concatenate([mids[:15], mids[-15:]]); tie = np.concatenate([[448.0], tie * np.where(np.arange(30) % 2, -1, 1), [2.0 ** -10]])
blocks.append(tie[:32])
# ties at s = 2^-10
blocks.append(tie[:32] * 2.0 ** -10)
x = np.concatenate(blocks).astype(np.float32)
q = act_quant(x.reshape(1, -1))[0].astype(np.float32)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fp8_golden.bin"), "wb") as f:
    f.write(E4M3.astype(np.float32).tobytes())
    f.write(struct.pack("<I", x.size))
    f.write(x.tobytes())
    f.write(q.tobytes())
print("values", x.size, "changed by quantisation", int(np.sum(x != q)))
