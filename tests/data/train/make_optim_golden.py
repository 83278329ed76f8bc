#!/usr/bin/python3
"""Goldens of the training optimisers (tests/train/), computed with PyTorch.

  make_optim_golden.py optim      writes optim_golden.safetensors: a table [40, 6] and a dense
                                  parameter [5, 7] stepped 3 times by torch.optim.SparseAdam,
                                  torch.optim.SGD (sparse gradients), row-wise Adagrad (FBGEMM's
                                  definition, re-implemented below) and torch.optim.AdamW.
  make_optim_golden.py finetune   writes finetune_golden.safetensors: the demo_a layer
                                  (tests/data/layer/demo_a) after 2 steps (SparseAdam on the table,
                                  AdamW on every dense weight, TrainRecipe's learning rates) with
                                  the synthetic gradients of synthetic_grad(), and its forward.
  make_optim_golden.py verify CKPT  loads a training checkpoint written by engram (state_dict names
                                  + optimizer.* state) into the reference module (strict) and
                                  checks its forward against finetune_golden.safetensors.
Run with /usr/bin/python3 from this directory; --ref names engram_ref.py's folder.
"""
import argparse, os, sys
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, "..", "layer", "demo_a")
BACKBONE_LR, TABLE_LR, DENSE_WD = 1e-3, 5e-3, 0.01  # TrainRecipe's defaults
TABLE = "multi_head_embedding.embedding.weight"


def synthetic_grad(n, k):
    """[n] f32 gradient, exact integer arithmetic (the C++ test computes the same values)."""
    i = np.arange(n, dtype=np.int64)
    return torch.from_numpy((((i * 7919 + k * 104729) % 2001 - 1000) / 100000.0).astype(np.float32))


def rowwise_adagrad_step(w, state, rows, g, lr, eps, wd):
    """FBGEMM/TorchRec row-wise Adagrad on the rows `rows` (coalesced gradient g [R, D])."""
    if wd:
        g = g + wd * w[rows]
    state[rows] += (g * g).sum(1) / g.shape[1]
    mult = lr / (state[rows].sqrt() + eps)
    w[rows] -= mult[:, None] * g


def optim(ref):
    e = ref
    gen = torch.Generator().manual_seed(17)
    R, D, N, S = 40, 6, 25, 3
    table0 = torch.randn(R, D, generator=gen)
    dense0 = torch.randn(5, 7, generator=gen)
    out = {"table": table0.clone(), "dense": dense0.clone()}
    ids = [torch.randint(0, R, (N,), generator=gen) for _ in range(S)]
    ids[0][:5] = ids[0][5:10]  # repeated rows: several contributions each
    grads = [torch.randn(N, D, generator=gen) for _ in range(S)]
    dgrads = [torch.randn(5, 7, generator=gen) for _ in range(S)]
    p_adam = torch.nn.Parameter(table0.clone())
    p_sgd = torch.nn.Parameter(table0.clone())
    adam = torch.optim.SparseAdam([p_adam], lr=5e-3)
    sgd = torch.optim.SGD([p_sgd], lr=0.1)
    ada_w, ada_s = table0.clone(), torch.zeros(R)
    adawd_w, adawd_s = table0.clone(), torch.zeros(R)
    p_dense = torch.nn.Parameter(dense0.clone())
    adamw = torch.optim.AdamW([p_dense], lr=1e-2, weight_decay=0.1)
    for s in range(S):
        sparse = torch.sparse_coo_tensor(ids[s][None, :], grads[s], (R, D)).coalesce()
        rows, vals = sparse.indices()[0], sparse.values()
        out[f"ids.{s}"], out[f"grads.{s}"] = ids[s], grads[s]
        out[f"coalesced.{s}.rows"], out[f"coalesced.{s}.values"] = rows.clone(), vals.clone()
        out[f"dense_grad.{s}"] = dgrads[s]
        p_adam.grad = sparse.clone()
        adam.step()
        p_sgd.grad = sparse.clone()
        sgd.step()
        rowwise_adagrad_step(ada_w, ada_s, rows, vals, 0.05, 1e-8, 0.0)
        rowwise_adagrad_step(adawd_w, adawd_s, rows, vals, 0.05, 1e-8, 0.01)
        p_dense.grad = dgrads[s].clone()
        adamw.step()
        out[f"sparse_adam.weight.{s}"] = p_adam.detach().clone()
        out[f"sgd.weight.{s}"] = p_sgd.detach().clone()
        out[f"rowwise_adagrad.weight.{s}"] = ada_w.clone()
        out[f"rowwise_adagrad.sum.{s}"] = ada_s.clone()
        out[f"rowwise_adagrad_wd.weight.{s}"] = adawd_w.clone()
        out[f"rowwise_adagrad_wd.sum.{s}"] = adawd_s.clone()
        out[f"adamw.weight.{s}"] = p_dense.detach().clone()
    st = adam.state[p_adam]
    out["sparse_adam.exp_avg"], out["sparse_adam.exp_avg_sq"] = st["exp_avg"], st["exp_avg_sq"]
    st = adamw.state[p_dense]
    out["adamw.exp_avg"], out["adamw.exp_avg_sq"] = st["exp_avg"], st["exp_avg_sq"]
    e.save_safetensors(os.path.join(HERE, "optim_golden.safetensors"),
                       {k: v.contiguous() for k, v in out.items()})
    print("optim golden written")


def demo_module(e):
    cfg = e.load_cfg(os.path.join(DEMO, "config.json"))

    class NoHash:  # hash ids come from the golden: no lookup needed
        primes = None
    w = e.load_safetensors(os.path.join(DEMO, "weights.safetensors"))
    m = e.Engram.__new__(e.Engram)
    torch.nn.Module.__init__(m)
    m.cfg, m.lid = cfg, None
    sizes = w[TABLE].shape[0]
    d, hc = cfg["hidden_size"], cfg["hc_mult"]
    eh = (cfg["max_ngram_size"] - 1) * cfg["n_embed_per_ngram"]
    m.register_buffer("offsets", w["multi_head_embedding.offsets"].clone())
    m.table = torch.nn.Embedding(sizes, w[TABLE].shape[1])
    m.short_conv = e.ShortConv(d, cfg["kernel_size"], cfg["max_ngram_size"], hc)
    m.value_proj = torch.nn.Linear(eh, d)
    m.key_projs = torch.nn.ModuleList([torch.nn.Linear(eh, d) for _ in range(hc)])
    m.norm1 = torch.nn.ModuleList([e.RMSNorm(d) for _ in range(hc)])
    m.norm2 = torch.nn.ModuleList([e.RMSNorm(d) for _ in range(hc)])
    return m, cfg


def load_official(m, sd, strict_names):
    """Copies official-name tensors into the module; every name must be present."""
    with torch.no_grad():
        for name, t in m.state_dict_official().items():
            assert name in sd, f"missing {name}"
            src = sd[name]
            assert tuple(src.shape) == tuple(t.shape), f"{name}: shape {tuple(src.shape)} != {tuple(t.shape)}"
            if name == TABLE:
                m.table.weight.copy_(src)
            elif name == "multi_head_embedding.offsets":
                m.offsets.copy_(src)
            else:
                dict(m.named_parameters())[name].copy_(src)
    if strict_names:
        extra = [k for k in sd if k not in m.state_dict_official() and not k.startswith("optimizer.")]
        assert not extra, f"unexpected tensors {extra}"


def forward_golden(e, m):
    inputs = e.load_safetensors(os.path.join(DEMO, "inputs.safetensors"))
    exp = e.load_safetensors(os.path.join(DEMO, "expected.safetensors"))
    with torch.no_grad():
        return m(inputs["hidden_states"], None, hash_ids=exp["hash_ids"]), exp["hash_ids"]


def finetune(e):
    m, cfg = demo_module(e)
    load_official(m, e.load_safetensors(os.path.join(DEMO, "weights.safetensors")), True)
    _, hash_ids = forward_golden(e, m)
    rows = torch.unique((hash_ids + m.offsets).reshape(-1))  # sorted
    D = m.table.weight.shape[1]
    dense = sorted(n for n in m.state_dict_official() if n not in (TABLE, "multi_head_embedding.offsets"))
    params = dict(m.named_parameters())
    table_opt = torch.optim.SparseAdam([m.table.weight], lr=TABLE_LR)
    dense_opt = torch.optim.AdamW([params[n] for n in dense], lr=BACKBONE_LR, weight_decay=DENSE_WD)
    for k in range(2):
        vals = synthetic_grad(rows.numel() * D, k).reshape(rows.numel(), D)
        m.table.weight.grad = torch.sparse_coo_tensor(rows[None, :], vals, m.table.weight.shape).coalesce()
        for idx, n in enumerate(dense):
            params[n].grad = synthetic_grad(params[n].numel(), 31 * k + idx).reshape(params[n].shape)
        table_opt.step()
        dense_opt.step()
    out, _ = forward_golden(e, m)
    e.save_safetensors(os.path.join(HERE, "finetune_golden.safetensors"),
                       {"output": out.contiguous(), "rows": rows.clone()},
                       {"table_lr": TABLE_LR, "backbone_lr": BACKBONE_LR, "dense_weight_decay": DENSE_WD})
    print("finetune golden written, rows touched", rows.numel(), "dense tensors", len(dense))


def verify(e, path):
    sd = e.load_safetensors(path)
    m, cfg = demo_module(e)
    load_official(m, sd, True)
    for name in m.state_dict_official():
        if name == "multi_head_embedding.offsets":
            continue
        for slot in ("exp_avg", "exp_avg_sq", "step"):
            assert f"optimizer.{name}.{slot}" in sd, f"missing optimizer.{name}.{slot}"
        assert sd[f"optimizer.{name}.exp_avg"].shape == sd[name].shape
    # The saved state resumes torch's optimiser: SparseAdam takes it as its own state.
    opt = torch.optim.SparseAdam([m.table.weight], lr=TABLE_LR)
    opt.load_state_dict({"state": {0: {"step": int(sd[f"optimizer.{TABLE}.step"]),
                                       "exp_avg": sd[f"optimizer.{TABLE}.exp_avg"],
                                       "exp_avg_sq": sd[f"optimizer.{TABLE}.exp_avg_sq"]}},
                         "param_groups": opt.state_dict()["param_groups"]})
    out, _ = forward_golden(e, m)
    want = e.load_safetensors(os.path.join(HERE, "finetune_golden.safetensors"))["output"]
    err = float((out - want).abs().max() / want.abs().max())
    print("verify:", path, "loads into the reference module; forward rel max err vs torch fine-tune", err)
    assert err < 1e-5, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["optim", "finetune", "verify"])
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--ref", default="/work/shared/reference")
    a = ap.parse_args()
    sys.path.insert(0, a.ref)
    import engram_ref as e
    torch.set_num_threads(1)
    if a.mode == "optim":
        optim(e)
    elif a.mode == "finetune":
        finetune(e)
    else:
        verify(e, a.checkpoint)


if __name__ == "__main__":
    main()
