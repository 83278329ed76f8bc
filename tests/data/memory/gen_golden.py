#!/usr/bin/python3
"""Writes fused_l14_rows.safetensors: the golden decoded rows of the fused (V4.1-style) table.

  /usr/bin/python3 gen_golden.py ../../../../shared  (the shared/ folder holding reference/ and golden/)

Contents: the layer-14 FP8 table exactly as in golden/fused_l14/weights.safetensors (embed.weight
F8_E4M3 [rows, 64], embed.weight_scale_inv F8_E8M0 [rows, 2]), the column sizes (primes [12]) and the
hash ids of batch 0 (hash_ids [48, 12]) from expected.safetensors, and what the PyTorch oracle's
EngramFused.rows() gathers for them: expected_f32 [48, 12 * 64] and expected_bf16 (its .bfloat16()).
"""
import os, sys, types
import torch

shared = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "/work/shared")
sys.path.insert(0, os.path.join(shared, "reference"))
from engram_ref import EngramFused, e4m3_table, load_safetensors, save_safetensors  # noqa: E402

golden = os.path.join(shared, "golden", "fused_l14")
weights = load_safetensors(os.path.join(golden, "weights.safetensors"))
expected = load_safetensors(os.path.join(golden, "expected.safetensors"))
codes, scales = weights["embed.weight"], weights["embed.weight_scale_inv"]
primes = expected["primes"]
hash_ids = expected["hash_ids"][0]  # [48, 12]

# EngramFused.rows() on an object holding just what it reads
module = types.SimpleNamespace(cfg={"quant_block": 32}, codes=codes, scales=scales,
                               lut=torch.from_numpy(e4m3_table()))
offsets = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), primes[:-1]]), 0)
rows = EngramFused.rows(module, hash_ids + offsets).flatten(start_dim=-2)  # [48, 768]
assert rows.dtype == torch.float32 and rows.shape == (48, 12 * 64)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fused_l14_rows.safetensors")
save_safetensors(out, {"embed.weight": codes, "embed.weight_scale_inv": scales, "primes": primes,
                       "hash_ids": hash_ids, "expected_f32": rows,
                       "expected_bf16": rows.to(torch.bfloat16)}, {"source": "golden/fused_l14 layer 14"})
print("wrote", out, "rows", tuple(codes.shape), "tokens", hash_ids.shape[0])
