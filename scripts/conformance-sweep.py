#!/usr/bin/python3
"""Random configurations against the PyTorch oracles: `engram forward` must give the oracle's hash ids
exactly and its output to float rounding, whole and fed in chunks.

Each case draws a compression table (a dense random map of V token ids onto V' ids), a config and an
input, writes the oracle's golden (engram_ref.py golden for the demo and fused layers, v41_ref.py make
for a V4.1 directory as released), runs `engram forward` on it twice (whole, and with --chunk K) and
compares. Demo: N 2..5, H 1..5, row dim H * {1, 3, 8, 16}, kernel 1..5, d in {8, 17, 33, 64, 100},
hc 1..4, one vocabulary size or one per order, 1..3 layer ids. Fused: head_dim a multiple of the
quant block (16, 32, 64), eps 1e-6 or 1e-5. V4.1: hidden {32, 64, 96}, hc 1..4, heads 1..4, head_dim
{32, 64}, N 2..5, an image token inside the vocabulary (dead tokens).

Needs Debian's python3-torch python3-numpy python3-sympy and a built `engram` (not part of CI: the
goldens under tests/data are). Exit status 1 when a case fails.

  /usr/bin/python3 scripts/conformance-sweep.py --cases 40 --seed 1
"""
import argparse, json, os, shutil, subprocess, sys, tempfile

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=30, help="random cases (default 30)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    ap.add_argument("--engram", default="build/bin/engram", help="the CLI (default build/bin/engram)")
    ap.add_argument("--reference", default="../shared/reference", help="folder of engram_ref.py, v41_ref.py")
    ap.add_argument("--workdir", default=None, help="keep the cases here (default: a temporary folder, removed when every case matches)")
    a = ap.parse_args()
    sys.path.insert(0, a.reference)
    import torch
    from engram_ref import load_safetensors, save_safetensors

    def run(cmd):
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(" ".join(cmd) + "\n" + (p.stdout + p.stderr)[-800:])

    def dense_lookup(rng, d):
        v = int(rng.integers(50, 3000))
        vc = int(rng.integers(10, v + 1))
        lookup = rng.permutation(np.concatenate([np.arange(vc), rng.integers(0, vc, size=v - vc)]))
        json.dump({"lookup": [int(x) for x in lookup]}, open(f"{d}/lookup.json", "w"))
        save_safetensors(f"{d}/lookup.safetensors", {"lookup": torch.tensor(lookup, dtype=torch.int64)})
        return v

    def layer_golden(rng, d):
        v = dense_lookup(rng, d)
        n, h = int(rng.integers(2, 6)), int(rng.integers(1, 6))
        sizes = [int(rng.integers(3, 4000)) for _ in range(n - 1)]
        layers = sorted(set(int(x) for x in rng.integers(0, 40, size=int(rng.integers(1, 4)))))
        cfg = {"engram_vocab_size": sizes[0] if rng.random() < 0.3 else sizes, "max_ngram_size": n,
               "n_head_per_ngram": h, "layer_ids": layers, "pad_id": int(rng.integers(0, v)),
               "seed": int(rng.integers(0, 100000)), "hidden_size": int(rng.choice([8, 17, 33, 64, 100])),
               "hc_mult": int(rng.integers(1, 5))}
        if rng.random() < 0.4:
            qb = int(rng.choice([16, 32, 64]))
            cfg.update(variant="fused", head_dim=qb * int(rng.integers(1, 4)), quant_block=qb,
                       rms_norm_eps=float(rng.choice([1e-6, 1e-5])))
        else:
            cfg.update(n_embed_per_ngram=h * int(rng.choice([1, 3, 8, 16])), kernel_size=int(rng.integers(1, 6)))
        json.dump(cfg, open(f"{d}/config.json", "w"))
        layer, t = int(rng.choice(layers)), int(rng.integers(1, 40))
        run(["/usr/bin/python3", f"{a.reference}/engram_ref.py", "golden", f"{d}/config.json", f"{d}/lookup.json",
             f"{d}/g", "--batch", str(int(rng.integers(1, 4))), "--seqlen", str(t), "--layer", str(layer),
             "--seed", str(int(rng.integers(0, 1000)))])
        g = f"{d}/g"
        return (cfg.get("variant", "demo"), cfg, t, f"{g}/expected.safetensors",
                ["--config", f"{g}/config.json", "--lookup", f"{g}/lookup.safetensors", "--weights",
                 f"{g}/weights.safetensors", "--layer", str(layer), "--input", f"{g}/inputs.safetensors"])

    def v41_golden(rng, d):
        v = dense_lookup(rng, d)
        layers = sorted(set(int(x) for x in rng.integers(0, 30, size=int(rng.integers(1, 4)))))
        layer, t = int(rng.choice(layers)), int(rng.integers(1, 50))
        args = ["--hidden", str(int(rng.choice([32, 64, 96]))), "--hc", str(int(rng.integers(1, 5))),
                "--heads", str(int(rng.integers(1, 5))), "--head-dim", str(int(rng.choice([32, 64]))),
                "--ngram", str(int(rng.integers(2, 6))), "--vocab", str(int(rng.integers(50, 3000))),
                "--layers", ",".join(map(str, layers)), "--layer", str(layer), "--seed", str(int(rng.integers(0, 999))),
                "--batch", str(int(rng.integers(1, 4))), "--seqlen", str(t), "--image-token", str(int(rng.integers(0, v)))]
        run(["/usr/bin/python3", f"{a.reference}/v41_ref.py", "make", f"{d}/m", "--lookup", f"{d}/lookup.json"] + args)
        return ("v41", " ".join(args), t, f"{d}/m/expected.safetensors",
                ["--model", f"{d}/m/model", "--lookup", f"{d}/lookup.safetensors", "--layer", str(layer),
                 "--input", f"{d}/m/inputs.safetensors"])

    rng = np.random.default_rng(a.seed)
    work = a.workdir or tempfile.mkdtemp(prefix="engram-sweep-")
    failures = 0
    for i in range(a.cases):
        d = f"{work}/case{i}"
        os.makedirs(d, exist_ok=True)
        try:
            kind, what, t, expected, inputs = (v41_golden if rng.random() < 0.3 else layer_golden)(rng, d)
            exp = load_safetensors(expected)
            problems = []
            for chunk in (None, int(rng.integers(1, max(2, t)))):
                cmd = [a.engram, "forward"] + inputs + ["-o", f"{d}/out.safetensors"]
                run(cmd + (["--chunk", str(chunk)] if chunk else []))
                out = load_safetensors(f"{d}/out.safetensors")
                if not np.array_equal(out["hash_ids"].numpy(), exp["hash_ids"].numpy()):
                    problems.append(f"hash_ids differ (chunk {chunk})")
                o, e = out["output"].numpy(), exp["output"].numpy()
                # f32 sums in another order; the V4.1 kv is rounded to bf16, where one flip shows
                err = float(np.abs(o - e).max() / max(1.0, float(np.abs(e).max())))
                if not err < (1e-4 if kind == "v41" else 2e-5):
                    problems.append(f"output off by {err:.2e} of max |output| (chunk {chunk})")
        except RuntimeError as ex:
            problems, kind, what = [str(ex)], "?", ""
        failures += bool(problems)
        print(f"case {i} {kind}: {'FAIL ' + '; '.join(problems) if problems else 'ok'}  {what if problems else ''}",
              flush=True)
    print(f"{a.cases - failures} of {a.cases} cases match the oracles"
          + ("" if a.workdir is None and not failures else f" ({work})"))
    if a.workdir is None and not failures:
        shutil.rmtree(work)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
