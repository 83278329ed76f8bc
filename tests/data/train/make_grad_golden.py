#!/usr/bin/python3
"""Gradient goldens for tests/train/backward_test.cpp and the `engram backward` CLI test.

PyTorch autograd on the oracle's modules (engram_ref.py: Engram = demo, EngramFused = V4.1's
block in f32/f64, its FP8 rows dequantised and trained as a dense table, dead tokens gated off as
v41_ref.py does). Run from the repository root:

    /usr/bin/python3 tests/data/train/make_grad_golden.py ../shared/reference tests/data/train

Each case directory holds config.json, weights.safetensors (official names; the fused table as FP8 +
E8M0 as released), inputs.safetensors (input_ids I64 [B,T], hidden_states F32 [B,T,hc,d],
grad_output F32 [B,T,hc,d], and for the fused case live U8 [B,T]), expected.safetensors
(hash_ids I64 [B,T,cols] without offsets, primes I64 [cols], output, grad_hidden_states, one
gradient per dense weight under its official name, table_grad_rows I64 [R] sorted distinct global
rows the live tokens read, table_grad_values [R,row_dim]) and expected_f64.safetensors (the same
in float64, stored F32 except where noted: F64 via a raw write). The lookup is
tests/data/hashing/dsv3_lookup.safetensors (copied beside as lookup.safetensors for the CLI).
"""
import json, math, os, struct, sys

import numpy as np
import torch

ref_dir, out_root = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.abspath(ref_dir))
import engram_ref as R  # noqa: E402

LOOKUP = R.load_safetensors("tests/data/hashing/dsv3_lookup.safetensors")["lookup"].numpy().tolist()


def save(path, tensors, metadata=None):
    """safetensors with F64 support (the oracle's writer has none)."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.float64:
            b, dt = t.numpy().tobytes(), "F64"
        elif t.dtype == torch.uint8 and name.endswith("embed.weight"):
            b, dt = t.numpy().tobytes(), "F8_E4M3"
        elif t.dtype == torch.uint8 and name.endswith("weight_scale_inv"):
            b, dt = t.numpy().tobytes(), "F8_E8M0"
        else:
            b, dt = t.numpy().tobytes(), {torch.float32: "F32", torch.int64: "I64", torch.uint8: "U8"}[t.dtype]
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def run_demo(cfg, name, B, T, lid, seed):
    torch.manual_seed(seed)
    hm = R.HashMapping(cfg, LOOKUP)
    m = R.Engram(cfg, hm, lid)
    with torch.no_grad():
        for i in range(cfg["hc_mult"]):
            for w in (m.norm1[i].weight, m.norm2[i].weight, m.short_conv.norms[i].weight):
                w.copy_(1.0 + 0.1 * torch.randn_like(w))
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 200, size=(B, T), dtype=np.int64)  # few distinct tokens: rows repeat
    ids[:, T // 2: T // 2 + 4] = ids[:, 0:4]
    hidden = torch.randn(B, T, cfg["hc_mult"], cfg["hidden_size"])
    gout = torch.randn(B, T, cfg["hc_mult"], cfg["hidden_size"])
    hashes = torch.from_numpy(hm.hash(ids, lid))
    sd = m.state_dict_official()
    rows = np.unique((hashes.numpy() + m.offsets.numpy()).reshape(-1))
    primes = [p for per in hm.primes[lid] for p in per]
    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    for dtype, fname in ((torch.float32, "expected.safetensors"), (torch.float64, "expected_f64.safetensors")):
        mm = R.Engram(cfg, hm, lid)
        mm.load_state_dict(m.state_dict())
        mm = mm.to(dtype)
        for i in range(cfg["hc_mult"]):  # the gate norms keep float32's epsilon (our convention)
            mm.norm1[i].eps = mm.norm2[i].eps = float(torch.finfo(torch.float32).eps)
        h = hidden.detach().clone().to(dtype).requires_grad_(True)
        out = mm(h, ids, hashes)
        out.backward(gout.to(dtype))
        g = {"hash_ids": hashes, "primes": torch.tensor(primes, dtype=torch.int64),
             "output": out.detach(), "grad_hidden_states": h.grad,
             "table_grad_rows": torch.from_numpy(rows.astype(np.int64)),
             "table_grad_values": mm.table.weight.grad[torch.from_numpy(rows)],
             "short_conv.conv.weight": mm.short_conv.conv.weight.grad,
             "value_proj.weight": mm.value_proj.weight.grad, "value_proj.bias": mm.value_proj.bias.grad}
        for i in range(cfg["hc_mult"]):
            g[f"short_conv.norms.{i}.weight"] = mm.short_conv.norms[i].weight.grad
            g[f"key_projs.{i}.weight"] = mm.key_projs[i].weight.grad
            g[f"key_projs.{i}.bias"] = mm.key_projs[i].bias.grad
            g[f"norm1.{i}.weight"] = mm.norm1[i].weight.grad
            g[f"norm2.{i}.weight"] = mm.norm2[i].weight.grad
        save(os.path.join(out_dir, fname), g, {"layer_id": lid})
    json.dump(cfg, open(os.path.join(out_dir, "config.json"), "w"), indent=1)
    save(os.path.join(out_dir, "weights.safetensors"), sd, {"layer_id": lid})
    save(os.path.join(out_dir, "inputs.safetensors"),
         {"input_ids": torch.from_numpy(ids), "hidden_states": hidden, "grad_output": gout})
    print(name, "rows touched", len(rows), "of", B * T * len(primes), "reads")


def fused_forward(mod, table, wkv, qw, kw, hidden, rows_idx, live, cfg):
    """EngramFused.forward on a dense table, with dead tokens gated off (v41_ref.py)."""
    emb = table[rows_idx].flatten(start_dim=-2)
    emb = emb * live[..., None]  # dead tokens read no rows
    kv = emb @ wkv.T
    d, hc, eps = cfg["hidden_size"], cfg["hc_mult"], cfg["rms_norm_eps"]
    value = kv[..., hc * d:]
    outs = []
    for i in range(hc):
        h = hidden[:, :, i, :]
        k = kv[..., i * d:(i + 1) * d]
        dot = (h * qw[i] * kw[i] * k).sum(-1)
        dot = dot * torch.rsqrt(h.pow(2).mean(-1) + eps) * torch.rsqrt(k.pow(2).mean(-1) + eps) / math.sqrt(d)
        g = torch.sqrt(dot.abs().clamp_min(1e-6))
        g = torch.where(dot < 0, -g, g).sigmoid() * live
        outs.append(h + g.unsqueeze(-1) * value)
    return torch.stack(outs, dim=2)


def run_fused(cfg, name, B, T, lid, seed):
    torch.manual_seed(seed)
    hm = R.HashMapping(cfg, LOOKUP)
    m = R.EngramFused(cfg, hm, lid, torch.Generator().manual_seed(seed))
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 200, size=(B, T), dtype=np.int64)
    ids[:, T // 2: T // 2 + 4] = ids[:, 0:4]
    live_np = (rng.random((B, T)) >= 0.15).astype(np.uint8)
    live_np[0, 2:4] = 0
    hidden = torch.randn(B, T, cfg["hc_mult"], cfg["hidden_size"])
    gout = torch.randn(B, T, cfg["hc_mult"], cfg["hidden_size"])
    hashes = torch.from_numpy(hm.hash(ids, lid))
    rows_idx = hashes + m.offsets
    all_rows = torch.arange(sum(m.sizes))
    dense_table = m.rows(all_rows)  # dequantised FP8 rows, f32
    live_rows = rows_idx.numpy()[live_np.astype(bool)]
    rows = np.unique(live_rows.reshape(-1))
    primes = [p for per in hm.primes[lid] for p in per]
    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    for dtype, fname in ((torch.float32, "expected.safetensors"), (torch.float64, "expected_f64.safetensors")):
        table = dense_table.to(dtype).clone().requires_grad_(True)
        wkv = m.wkv.weight.detach().to(dtype).clone().requires_grad_(True)
        qw = m.q_weight.detach().to(dtype).clone().requires_grad_(True)
        kw = m.k_weight.detach().to(dtype).clone().requires_grad_(True)
        h = hidden.detach().clone().to(dtype).requires_grad_(True)
        live = torch.from_numpy(live_np).to(dtype)
        out = fused_forward(m, table, wkv, qw, kw, h, rows_idx, live, cfg)
        out.backward(gout.to(dtype))
        g = {"hash_ids": hashes, "primes": torch.tensor(primes, dtype=torch.int64),
             "output": out.detach(), "grad_hidden_states": h.grad,
             "table_grad_rows": torch.from_numpy(rows.astype(np.int64)),
             "table_grad_values": table.grad[torch.from_numpy(rows)],
             "wkv.weight": wkv.grad, "q_weight": qw.grad, "k_weight": kw.grad}
        save(os.path.join(out_dir, fname), g, {"layer_id": lid})
    json.dump(cfg, open(os.path.join(out_dir, "config.json"), "w"), indent=1)
    save(os.path.join(out_dir, "weights.safetensors"), m.state_dict_official(), {"layer_id": lid})
    save(os.path.join(out_dir, "inputs.safetensors"),
         {"input_ids": torch.from_numpy(ids), "hidden_states": hidden, "grad_output": gout,
          "live": torch.from_numpy(live_np)})
    print(name, "rows touched", len(rows), "dead tokens", int((live_np == 0).sum()))


demo = {"engram_vocab_size": [31, 37], "max_ngram_size": 3, "n_embed_per_ngram": 16, "n_head_per_ngram": 2,
        "layer_ids": [1, 5], "pad_id": 2, "seed": 0, "kernel_size": 3, "hidden_size": 24, "hc_mult": 2}
fused = {"variant": "fused", "engram_vocab_size": [29, 41], "max_ngram_size": 3, "n_head_per_ngram": 2,
         "head_dim": 32, "quant_block": 16, "layer_ids": [2], "pad_id": 1, "seed": 0, "hidden_size": 40,
         "hc_mult": 2, "rms_norm_eps": 1e-6}
run_demo(demo, "demo_grad", 2, 19, 5, 11)
run_fused(fused, "fused_grad", 2, 17, 2, 12)
