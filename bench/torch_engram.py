#!/usr/bin/python3
"""PyTorch baseline of the official Engram demo module, written for engram's benchmarks.

It follows the structure of DeepSeek's demo (engram_demo_v1.py): NumPy hashing, one nn.Embedding
for all heads with offsets, a value projection and hc_mult key projections, per-branch RMSNorms,
the signed-sqrt sigmoid gate and the dilated causal depthwise short conv. Weights are random.

  torch_engram.py bench CFG.json LOOKUP.safetensors [--batch B --seqlen T --threads N --dtype f32|bf16 --reps R] [--prehash]
      prints "torch ... tokens/s X median_s S" for one forward: NumPy hashing included, as in the
      demo; with --prehash the hash ids are computed once before the timer (the nn part alone)
  torch_engram.py check CFG.json LOOKUP.safetensors GOLDEN_DIR
      loads GOLDEN_DIR/{weights,inputs,expected}.safetensors (written by the oracle) and prints the
      largest difference of hash ids and outputs: proves this baseline computes the same layer.

Needs Debian's python3-torch python3-numpy python3-sympy (run with /usr/bin/python3).
"""
import argparse
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
from sympy import isprime

_NP = {"F32": np.float32, "I64": np.int64, "I32": np.int32, "BF16": np.uint16, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(blob[a:b], dtype=_NP[info["dtype"]]).reshape(info["shape"])
        out[name] = arr.copy()
    return out


class Hashing:
    """Compressed ids -> per-head row ids, the official multiply-XOR / prime-modulo scheme."""

    def __init__(self, cfg, lookup, layer):
        self.lookup = np.asarray(lookup, dtype=np.int64)
        vocab = int(self.lookup.max()) + 1
        self.n, self.h = cfg["max_ngram_size"], cfg["n_head_per_ngram"]
        self.pad = int(self.lookup[cfg["pad_id"]])
        bound = max(1, int(np.iinfo(np.int64).max // vocab) // 2)
        rng = np.random.default_rng(int(cfg["seed"] + 10007 * layer))
        self.mult = rng.integers(0, bound, size=(self.n,), dtype=np.int64) * 2 + 1
        sizes = cfg["engram_vocab_size"]
        taken, primes = set(), {}
        for lid in cfg["layer_ids"]:
            per_layer = []
            for order in range(2, self.n + 1):
                cand = (sizes if isinstance(sizes, int) else sizes[order - 2]) - 1
                for _ in range(self.h):
                    cand += 1
                    while not isprime(cand) or cand in taken:
                        cand += 1
                    taken.add(cand)
                    per_layer.append(cand)
            primes[lid] = per_layer
        self.primes = primes[layer]

    def __call__(self, ids):
        x = self.lookup[np.asarray(ids, dtype=np.int64)]
        T = x.shape[1]
        cols = []
        mix = x * self.mult[0]
        for k in range(1, self.n):
            shifted = np.full_like(x, self.pad)
            shifted[:, k:] = x[:, : T - k]
            mix = np.bitwise_xor(mix, shifted * self.mult[k])
            for j in range(self.h):
                cols.append(np.mod(mix, self.primes[(k - 1) * self.h + j]))
        return np.stack(cols, axis=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.weight


class EngramDemo(nn.Module):
    def __init__(self, cfg, lookup, layer):
        super().__init__()
        self.hash = Hashing(cfg, lookup, layer)
        d, hc, n = cfg["hidden_size"], cfg["hc_mult"], cfg["max_ngram_size"]
        row = cfg["n_embed_per_ngram"] // cfg["n_head_per_ngram"]
        width = (n - 1) * cfg["n_embed_per_ngram"]
        self.d, self.hc = d, hc
        self.register_buffer("offsets", torch.tensor(np.cumsum([0] + self.hash.primes[:-1]), dtype=torch.long))
        self.embedding = nn.Embedding(sum(self.hash.primes), row)
        self.value_proj = nn.Linear(width, d)
        self.key_projs = nn.ModuleList([nn.Linear(width, d) for _ in range(hc)])
        self.norm1 = nn.ModuleList([RMSNorm(d) for _ in range(hc)])
        self.norm2 = nn.ModuleList([RMSNorm(d) for _ in range(hc)])
        k = cfg["kernel_size"]
        self.conv = nn.Conv1d(d * hc, d * hc, k, groups=d * hc, bias=False, padding=(k - 1) * n, dilation=n)
        self.conv_norms = nn.ModuleList([RMSNorm(d, eps=1e-5) for _ in range(hc)])

    def load_official(self, sd):
        t = {k: torch.from_numpy(v) for k, v in sd.items()}
        with torch.no_grad():
            self.embedding.weight.copy_(t["multi_head_embedding.embedding.weight"])
            self.value_proj.weight.copy_(t["value_proj.weight"])
            self.value_proj.bias.copy_(t["value_proj.bias"])
            self.conv.weight.copy_(t["short_conv.conv.weight"])
            for i in range(self.hc):
                self.key_projs[i].weight.copy_(t[f"key_projs.{i}.weight"])
                self.key_projs[i].bias.copy_(t[f"key_projs.{i}.bias"])
                self.norm1[i].weight.copy_(t[f"norm1.{i}.weight"])
                self.norm2[i].weight.copy_(t[f"norm2.{i}.weight"])
                self.conv_norms[i].weight.copy_(t[f"short_conv.norms.{i}.weight"])

    def forward(self, hidden, ids, hash_ids=None):
        """hash_ids: the [B, T, cols] hash ids of ids, computed beforehand (None: hash here)."""
        rows = (torch.from_numpy(self.hash(ids)) if hash_ids is None else hash_ids) + self.offsets
        e = self.embedding(rows).flatten(start_dim=-2)
        gates = []
        for i in range(self.hc):
            k = self.norm1[i](self.key_projs[i](e))
            q = self.norm2[i](hidden[:, :, i, :])
            g = (k * q).sum(-1) / math.sqrt(self.d)
            g = g.abs().clamp_min(1e-6).sqrt() * g.sign()
            gates.append(g.sigmoid().unsqueeze(-1))
        y = torch.stack(gates, dim=2) * self.value_proj(e).unsqueeze(2)
        B, T = y.shape[:2]
        yn = torch.cat([self.conv_norms[i](y[:, :, i, :]) for i in range(self.hc)], dim=-1)
        c = self.conv(yn.transpose(1, 2))[..., :T]
        return y + nn.functional.silu(c).transpose(1, 2).reshape(y.shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["bench", "check"])
    ap.add_argument("cfg")
    ap.add_argument("lookup")
    ap.add_argument("golden", nargs="?")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--layer", type=int, default=None)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--prehash", action="store_true",
                    help="bench: hash once before the timer (time the nn part alone)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = json.load(open(a.cfg))
    lookup = read_safetensors(a.lookup)["lookup"]
    layer = a.layer if a.layer is not None else cfg["layer_ids"][0]
    if a.mode == "check":
        w = read_safetensors(f"{a.golden}/weights.safetensors")
        inp = read_safetensors(f"{a.golden}/inputs.safetensors")
        exp = read_safetensors(f"{a.golden}/expected.safetensors")
        m = EngramDemo(cfg, lookup, layer)
        m.load_official(w)
        with torch.no_grad():
            out = m(torch.from_numpy(inp["hidden_states"]), inp["input_ids"]).numpy()
        hash_diff = int(np.abs(m.hash(inp["input_ids"]) - exp["hash_ids"]).max())
        rel = float(np.abs(out - exp["output"]).max() / np.abs(exp["output"]).max())
        print(f"check hash_max_diff {hash_diff} output_max_rel_err {rel:.3e}")
        sys.exit(0 if hash_diff == 0 and rel < 1e-5 else 1)
    m = EngramDemo(cfg, lookup, layer)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, len(lookup), size=(a.batch, a.seqlen), dtype=np.int64)
    hidden = torch.randn(a.batch, a.seqlen, cfg["hc_mult"], cfg["hidden_size"])
    if a.dtype == "bf16":
        m, hidden = m.to(torch.bfloat16), hidden.to(torch.bfloat16)
    hash_ids = torch.from_numpy(m.hash(ids)) if a.prehash else None
    times = []
    with torch.no_grad():
        m(hidden, ids, hash_ids)
        for _ in range(a.reps):
            t0 = time.perf_counter()
            m(hidden, ids, hash_ids)
            times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    print(f"torch {a.dtype} batch {a.batch} seqlen {a.seqlen} threads {a.threads} "
          f"hashing {'before the timer' if a.prehash else 'in the call'} "
          f"tokens/s {a.batch * a.seqlen / med:.1f} median_s {med:.5f}")


if __name__ == "__main__":
    main()
