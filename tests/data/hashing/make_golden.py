#!/usr/bin/python3
"""Regenerates the hashing test data in this folder (run with Debian's /usr/bin/python3 from the
repository root; needs numpy, torch and sympy, the oracle in ../shared/reference and, for the other
tokenizers' compression tables, the JSON files that ../shared/reference/gen_lookup.js wrote to
/tmp/hf/luts). Nothing here runs during the tests: they read the files this script writes.

  numpy_random.json        SeedSequence pools and states, PCG64 states and raw draws, and sequences of
                           Generator.integers(low, high, size, dtype=int64, endpoint) calls, all from
                           NumPy itself, plus the reference's per-layer multipliers for many (seed,
                           layer, compressed vocabulary size, N).
  dsv3_lookup.safetensors  the DeepSeek-V3 compression table (I32 `lookup`, 128,815 entries).
  kjv_slice.safetensors    the first 24,576 DeepSeek-V3 token ids of the King James Bible (I32).
  golden/<case>.safetensors  one hashing case each (`make_golden.py negative_ids` rewrites only
                           dsv3_negative_ids): `input_ids` [B, T] (I32), `hash_ids` [B, T, cols]
                           (I64) from `engram_ref.py hash`, `multipliers` [N] and `primes` [cols] (I64)
                           from the oracle's HashMapping, optionally `lookup` (I32); metadata `config`
                           (JSON), `layer_id`, `lookup` ("dsv3" or "inline") and `description`.

Cases on other tokenizers use a reduced table, so that the files stay small: the entries of the ids
that occur (and of pad_id), in id order, then one entry holding max(lookup) so that the compressed
vocabulary size C = max(lookup) + 1 is unchanged; ids and pad_id are renumbered into that table.
Hashing depends only on the compressed ids, C and the compressed pad id, so the oracle's hash ids for
the real table and the real ids are the expected output for the reduced table and renumbered ids
(this script checks that too).
"""
import json, os, random, subprocess, sys, tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.abspath(os.path.join(ROOT, "..", "..", "..", "..", "shared"))
REF = os.path.join(SHARED, "reference", "engram_ref.py")
LUTS = "/tmp/hf/luts"
sys.path.insert(0, os.path.dirname(REF))
import engram_ref as ref  # noqa: E402

INT64_MAX = 2**63 - 1


# ------------------------------------------------------------------------------ numpy random
def pcg_state(g):
    s = g.bit_generator.state
    st, inc = s["state"]["state"], s["state"]["inc"]
    return {"state_hi": st >> 64, "state_lo": st & (2**64 - 1), "inc_hi": inc >> 64,
            "inc_lo": inc & (2**64 - 1), "has_uint32": int(s["has_uint32"]), "uinteger": int(s["uinteger"])}


def numpy_random_cases():
    out = {"numpy_version": np.__version__}
    entropies = [0, 1, 2, 12345, 10007 * 15, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**40 + 123,
                 2**63 - 1, 2**64 - 1, 2**64, 2**100 + 7, 2**127 + 2**64 + 5]
    seqs = []
    for e in entropies:
        ss = np.random.SeedSequence(e)
        words = [int(w) for w in np.random.bit_generator._coerce_to_uint32_array(e)]
        seqs.append({"entropy_words": words, "entropy": str(e), "pool": [int(v) for v in ss.pool],
                     "state_u32": [int(v) for v in ss.generate_state(9, np.uint32)],
                     "state_u64": [int(v) for v in ss.generate_state(5, np.uint64)]})
    out["seed_sequence"] = seqs

    pcg = []
    for seed in [0, 1, 42, 12345, 10007 * 15, 2**32 + 1, 2**62 + 3, 2**64 - 1]:
        g = np.random.default_rng(seed)
        st = pcg_state(g)
        raw = [int(v) for v in g.bit_generator.random_raw(12)]
        pcg.append({"seed": seed, **st, "raw": raw})
    out["pcg64"] = pcg

    # Sequences of integers() calls on one generator: the 32-bit paths share PCG64's buffered
    # upper half across calls, the 64-bit paths do not touch it.
    scripted = [
        (0, 1, 3, False), (0, 2, 5, False), (0, 3, 7, False), (0, 1000, 9, False),
        (-50, 50, 4, False), (0, 2**31 + 1, 16, False), (0, 2**32 - 1, 3, False),
        (0, 2**32, 5, False), (0, 2**32 + 1, 3, False), (0, 2**32 + 2, 3, False),
        (0, 1000, 1, False), (0, 2**40, 4, False), (0, 1000, 2, False), (0, 2**62 + 1, 5, False),
        (0, 2**63 - 1, 3, False), (-2**63, 2**63 - 1, 4, True), (-2**63, 1, 6, False),
        (-2**62, 2**62 + 1, 6, False), (5, 5, 3, True), (7, 8, 2, False), (0, 2**32 - 1, 1, True),
        (0, 2**32, 3, True), (-2**31, 2**31, 5, False), (0, 1000, 0, False), (0, 17, 33, False),
    ]
    rnd = random.Random(20240611)
    gens = []
    for seed in [0, 1, 42, 12345, 10007 * 15, 2**33 + 7, 2**62 + 3]:
        g = np.random.default_rng(seed)
        calls = []
        for low, high, size, endpoint in scripted:
            v = g.integers(low, high, size=size, dtype=np.int64, endpoint=endpoint)
            calls.append({"low": low, "high": high, "size": size, "endpoint": endpoint,
                          "values": [int(x) for x in v]})
        gens.append({"seed": seed, "calls": calls, "final": pcg_state(g)})
    # Fuzz: log-uniform bounds over the whole int64 range, odd sizes, both endpoint modes.
    for k in range(40):
        seed = rnd.randrange(0, 2**63)
        g = np.random.default_rng(seed)
        calls = []
        for _ in range(8):
            span_bits = rnd.choice([1, 2, 5, 16, 31, 32, 33, 40, 53, 62, 63, 64])
            span = rnd.randrange(1, 2**span_bits + 1)  # number of possible values
            endpoint = rnd.random() < 0.3 or span > 2**64 - 1
            top = INT64_MAX - span + 1 if endpoint else INT64_MAX - span
            low = rnd.randrange(-2**63, top + 1)
            high = low + span - 1 if endpoint else low + span
            size = rnd.choice([1, 2, 3, 5, 8, 13])
            v = g.integers(low, high, size=size, dtype=np.int64, endpoint=endpoint)
            calls.append({"low": low, "high": high, "size": size, "endpoint": endpoint,
                          "values": [int(x) for x in v]})
        gens.append({"seed": seed, "calls": calls, "final": pcg_state(g)})
    out["integers"] = gens

    mults = []
    sizes = [1, 2, 3, 1000, 21064, 98627, 128815, 169824, 2**31 - 1, 2**31, 2**32 + 5, 2**33,
             2**40, 2**50 + 1, 2**60, 2**61, 2**61 + 2**60]
    for k in range(160):
        seed = rnd.choice([0, 1, 7, 12345, 2**40, rnd.randrange(0, 2**40)])
        layer = rnd.choice([0, 1, 2, 3, 14, 15, 30, 61, rnd.randrange(0, 1000)])
        C = sizes[k % len(sizes)] if k < 2 * len(sizes) else rnd.choice(
            [rnd.randrange(1, 2**17), rnd.randrange(1, 2**34), rnd.randrange(1, 2**61)])
        N = rnd.choice([2, 3, 4, 5, 8])
        half = max(1, int(np.iinfo(np.int64).max // C) // 2)
        g = np.random.default_rng(int(seed + 10007 * layer))
        m = g.integers(low=0, high=half, size=(N,), dtype=np.int64) * 2 + 1
        mults.append({"seed": seed, "layer": layer, "compressed_vocab_size": C, "max_ngram_size": N,
                      "values": [int(x) for x in m]})
    out["multipliers"] = mults
    with open(os.path.join(ROOT, "numpy_random.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


# ------------------------------------------------------------------------------ hashing golden
def save(path, tensors, metadata):
    ref.save_safetensors(path, tensors, metadata)


def load_lut(name):
    if name == "dsv3":
        return ref.load_safetensors(os.path.join(SHARED, "data", "deepseek_v3", "lookup.safetensors"))[
            "lookup"].numpy().astype(np.int64)
    return np.asarray(json.load(open(os.path.join(LUTS, name + ".json")))["lookup"], dtype=np.int64)


def kjv():
    return ref.load_safetensors(os.path.join(SHARED, "data", "kjv.dsv3.safetensors"))["input_ids"].numpy()


def run_oracle(cfg, lut, ids, layer, tmp):
    """engram_ref.py hash on the given ids (through --ids-from), returns hash_ids [B, T, cols]."""
    B, T = ids.shape
    cfg_path, lut_path, corpus, outdir = (os.path.join(tmp, n) for n in ("cfg.json", "lut.json", "c.st", "out"))
    json.dump(cfg, open(cfg_path, "w"))
    json.dump({"lookup": [int(v) for v in lut]}, open(lut_path, "w"))
    save(corpus, {"input_ids": torch.from_numpy(ids.reshape(-1).astype(np.int64))}, None)
    subprocess.run(["/usr/bin/python3", REF, "hash", cfg_path, lut_path, outdir, "--ids-from", corpus,
                    "--batch", str(B), "--seqlen", str(T), "--layer", str(layer)], check=True,
                   stdout=subprocess.DEVNULL)
    got = ref.load_safetensors(os.path.join(outdir, "expected.safetensors"))["hash_ids"].numpy()
    back = ref.load_safetensors(os.path.join(outdir, "inputs.safetensors"))["input_ids"].numpy()
    assert (back == ids).all()
    return got


def reduce_lookup(lut, ids, pad_id):
    used = np.unique(np.concatenate([ids.reshape(-1), [pad_id]]))
    small = np.concatenate([lut[used], [lut.max()]])
    remap = {int(v): i for i, v in enumerate(used)}
    new_ids = np.vectorize(lambda v: remap[int(v)])(ids).astype(np.int64)
    return small, new_ids, remap[int(pad_id)]


def make_case(name, cfg, lut_name, ids, layer, description, tmp, inline=True):
    lut = load_lut(lut_name)
    hm = ref.HashMapping(cfg, lut)
    expected = run_oracle(cfg, lut, ids, layer, tmp)
    assert (expected == hm.hash(ids, layer)).all()
    primes = [p for per in hm.primes[layer] for p in per]
    tensors = {}
    meta_cfg = dict(cfg)
    if inline:
        small, new_ids, new_pad = reduce_lookup(lut, ids, cfg["pad_id"])
        meta_cfg["pad_id"] = new_pad
        hm2 = ref.HashMapping(meta_cfg, small)
        assert (hm2.hash(new_ids, layer) == expected).all()
        assert (hm2.mult[layer] == hm.mult[layer]).all()
        tensors["lookup"] = torch.from_numpy(small.astype(np.int32))
        ids = new_ids
    tensors["input_ids"] = torch.from_numpy(ids.astype(np.int32))
    tensors["hash_ids"] = torch.from_numpy(expected.astype(np.int64))
    tensors["multipliers"] = torch.from_numpy(hm.mult[layer].astype(np.int64))
    tensors["primes"] = torch.tensor(primes, dtype=torch.int64)
    os.makedirs(os.path.join(ROOT, "golden"), exist_ok=True)
    save(os.path.join(ROOT, "golden", name + ".safetensors"), tensors,
         {"config": json.dumps(meta_cfg), "layer_id": layer, "lookup": "inline" if inline else "dsv3",
          "description": description})
    print(name, tuple(expected.shape), "primes", primes[:3], "...")


def negative_ids_golden(tmp, rng):
    """Negative token ids: the reference compresses only ids >= 0 and hashes the others as they are
    (a -1 or -100 pad, down to the int32 minimum): their products wrap and their mixes go negative."""
    V = len(load_lut("dsv3"))
    ids = rng.integers(0, V, 2 * 45).astype(np.int64)
    ids[[0, 3, 4, 5, 17, 44, 45, 50, 51, 52, 60, 89]] = [-1, -100, -1, -1, -2**31, -2**31 + 1, -7, -1, V - 1,
                                                        -123456789, 0, -1]
    make_case("dsv3_negative_ids", {"n_embed_per_ngram": 320, "kernel_size": 4, "hidden_size": 64, "hc_mult": 2,
                                    "engram_vocab_size": [20011, 30011, 40009], "max_ngram_size": 4,
                                    "n_head_per_ngram": 5, "layer_ids": [3, 11], "pad_id": 2, "seed": 42},
              "dsv3", ids.reshape(2, 45), 11,
              "negative token ids (hashed uncompressed, as the reference does), N=4 H=5", tmp, inline=False)


def hash_goldens():
    os.makedirs(os.path.join(ROOT, "golden"), exist_ok=True)
    rng = np.random.default_rng(7)
    corpus = kjv()
    lut_dsv3 = load_lut("dsv3")
    save(os.path.join(ROOT, "dsv3_lookup.safetensors"), {"lookup": torch.from_numpy(lut_dsv3.astype(np.int32))},
         {"source": "shared/data/deepseek_v3/lookup.safetensors (HF tokenizers compression, 128815 -> 98627)"})
    save(os.path.join(ROOT, "kjv_slice.safetensors"), {"input_ids": torch.from_numpy(corpus[:24576].astype(np.int32))},
         {"source": "first 24576 DeepSeek-V3 ids of shared/data/kjv.dsv3.safetensors (King James Bible)"})

    def with_edges(ids, V, pad):
        ids = ids.copy().reshape(-1)
        ids[:6] = [0, V - 1, pad, pad, 0, V - 1][: min(6, ids.size)]
        ids[-3:] = [pad, V - 1, 1][-min(3, ids.size):]
        return ids

    base = {"n_embed_per_ngram": 512, "kernel_size": 4, "hidden_size": 1024, "hc_mult": 4}
    with tempfile.TemporaryDirectory() as tmp:
        # For the two shared goldens: the hash ids only, next to the real (full) table.
        for g in ["small_l15", "fused_l14"]:
            cfg = json.load(open(os.path.join(SHARED, "golden", g, "config.json")))
            e = ref.load_safetensors(os.path.join(SHARED, "golden", g, "expected.safetensors"))
            i = ref.load_safetensors(os.path.join(SHARED, "golden", g, "inputs.safetensors"))
            layer = int(g.split("_l")[1])
            save(os.path.join(ROOT, "golden", "shared_" + g + ".safetensors"),
                 {"input_ids": i["input_ids"].to(torch.int32), "hash_ids": e["hash_ids"],
                  "multipliers": e["multipliers"], "primes": e["primes"]},
                 {"config": json.dumps(cfg), "layer_id": layer, "lookup": "dsv3",
                  "description": f"hash ids of shared/golden/{g} (engram_ref.py golden)"})
        T = 96
        make_case("dsv3_kjv_n3h8", dict(base, engram_vocab_size=[646400, 646400], max_ngram_size=3,
                                        n_head_per_ngram=8, layer_ids=[1, 15], pad_id=2, seed=0),
                  "dsv3", corpus[: 2 * T].reshape(2, T).astype(np.int64), 15,
                  "V3-style N=3 H=8, 646400 tables, King James Bible text", tmp, inline=False)
        make_case("dsv3_kjv_n4h8", dict(base, engram_vocab_size=646400, max_ngram_size=4, n_head_per_ngram=8,
                                        layer_ids=[2, 14, 30], pad_id=1, seed=1),
                  "dsv3", corpus[5000:5000 + 128].reshape(1, 128).astype(np.int64), 30,
                  "V4.1-style N=4 H=8, integer engram_vocab_size, third layer, King James Bible text", tmp,
                  inline=False)
        V = len(lut_dsv3)
        negative_ids_golden(tmp, np.random.default_rng(45))  # its own draws: the others unchanged
        make_case("dsv3_n2h1_vocab1", dict(base, engram_vocab_size=[1], max_ngram_size=2, n_head_per_ngram=1,
                                           n_embed_per_ngram=64, layer_ids=[0, 3], pad_id=0, seed=5),
                  "dsv3", with_edges(rng.integers(0, V, 3 * 17), V, 0).reshape(3, 17), 3,
                  "N=2 H=1, engram_vocab_size 1 (primes 2 and 3), random ids with edge ids", tmp, inline=False)
        make_case("dsv3_n3h2_huge", dict(base, engram_vocab_size=[2**61, 2**61 + 1000], max_ngram_size=3,
                                         n_head_per_ngram=2, layer_ids=[4, 8], pad_id=2, seed=99),
                  "dsv3", with_edges(rng.integers(0, V, 2 * 40), V, 2).reshape(2, 40), 8,
                  "N=3 H=2, tables near 2^61 (64-bit primes, large hash ids)", tmp, inline=False)
        for name, lut_name, cfg, B, T2, layer, desc in [
            ("llama2_n5h3", "llama2", dict(base, engram_vocab_size=[5003, 7001, 9001, 11003], max_ngram_size=5,
                                            n_head_per_ngram=3, n_embed_per_ngram=384, layer_ids=[6, 2, 40],
                                            pad_id=0, seed=12345), 2, 33, 40,
             "Llama 2 table, N=5 H=3, list vocab sizes, unsorted layer_ids, last layer"),
            ("claude_n3h5", "claude", dict(base, engram_vocab_size=1000, max_ngram_size=3, n_head_per_ngram=5,
                                            n_embed_per_ngram=320, layer_ids=[0, 1, 2, 3], pad_id=3, seed=7),
             2, 41, 3, "Claude table, N=3 H=5, integer vocab shared by four layers, fourth layer"),
            ("gpt4o_n4h2", "gpt4o", dict(base, engram_vocab_size=[50, 60, 70], max_ngram_size=4,
                                          n_head_per_ngram=2, n_embed_per_ngram=128, layer_ids=[5, 9],
                                          pad_id=199999, seed=2**40), 4, 9, 9,
             "GPT-4o table, N=4 H=2, tiny tables, large seed, pad is the last id"),
            ("gemma3_n2h16", "gemma3", dict(base, engram_vocab_size=[2**31 + 11], max_ngram_size=2,
                                             n_head_per_ngram=16, layer_ids=[1], pad_id=0, seed=3), 1, 37, 1,
             "Gemma 3 table, N=2 H=16, primes above 2^31"),
            ("qwen3_n3h4", "qwen3", dict(base, engram_vocab_size=[129280 * 5, 129280 * 5], max_ngram_size=3,
                                          n_head_per_ngram=4, n_embed_per_ngram=256, layer_ids=[10, 20],
                                          pad_id=151643, seed=0), 3, 29, 10,
             "Qwen 3 table, N=3 H=4, first layer"),
        ]:
            Vt = len(load_lut(lut_name))
            ids = with_edges(rng.integers(0, Vt, B * T2), Vt, cfg["pad_id"]).reshape(B, T2)
            make_case(name, cfg, lut_name, ids, layer, desc, tmp, inline=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["negative_ids"]:  # this case alone (needs no other tokenizer's table)
        with tempfile.TemporaryDirectory() as tmp:
            negative_ids_golden(tmp, np.random.default_rng(45))
    else:
        numpy_random_cases()
        hash_goldens()
