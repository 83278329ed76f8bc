#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_checkpoint: tiny valid checkpoints of the configs the fuzzer
embeds (checkpoint_fuzzer.cpp), one demo (F32, and BF16 table) and one fused (FP8 + E8M0).
Run: python3 fuzz/make_checkpoint_seeds.py fuzz/corpus/checkpoint"""
import json
import struct
import sys

import numpy as np


def save(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def f32(rng, *shape):
    return ("F32", shape, rng.standard_normal(shape).astype("<f4").tobytes())


def bf16(rng, *shape):
    bits = rng.standard_normal(shape).astype("<f4").view("<u4") >> 16
    return ("BF16", shape, bits.astype("<u2").tobytes())


def demo(rng, table):
    d, hc, cols, r, k = 4, 2, 4, 4, 2  # must match kDemoConfig in checkpoint_fuzzer.cpp
    rows = [5, 7, 5, 7]
    t = {"multi_head_embedding.embedding.weight": table(rng, sum(rows), r),
         "multi_head_embedding.offsets": ("I64", (cols,), np.cumsum([0] + rows[:-1]).astype("<i8").tobytes()),
         "value_proj.weight": f32(rng, d, cols * r), "value_proj.bias": f32(rng, d),
         "short_conv.conv.weight": f32(rng, hc * d, 1, k)}
    for i in range(hc):
        t[f"key_projs.{i}.weight"] = f32(rng, d, cols * r)
        t[f"key_projs.{i}.bias"] = f32(rng, d)
        t[f"norm1.{i}.weight"] = f32(rng, d)
        t[f"norm2.{i}.weight"] = f32(rng, d)
        t[f"short_conv.norms.{i}.weight"] = f32(rng, d)
    return t


def fused(rng):
    d, hc, cols, hd, qb = 4, 2, 2, 16, 16  # must match kFusedConfig in checkpoint_fuzzer.cpp
    rows = 5 + 7
    codes = rng.integers(0, 0x7E, size=(rows, hd), dtype=np.uint8)  # finite E4M3 codes
    scales = np.full((rows, hd // qb), 127, dtype=np.uint8)          # E8M0 2^0
    return {"embed.weight": ("F8_E4M3", (rows, hd), codes.tobytes()),
            "embed.weight_scale_inv": ("F8_E8M0", (rows, hd // qb), scales.tobytes()),
            "wkv.weight": f32(rng, (hc + 1) * d, cols * hd), "q_weight": f32(rng, hc, d),
            "k_weight": f32(rng, hc, d)}


if __name__ == "__main__":
    out = sys.argv[1]
    rng = np.random.default_rng(0)
    save(f"{out}/demo_f32.safetensors", demo(rng, f32))
    save(f"{out}/demo_bf16.safetensors", demo(rng, bf16))
    save(f"{out}/fused_fp8.safetensors", fused(rng))
