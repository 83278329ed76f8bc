#!/usr/bin/python3
"""Real hash ids for gather_bench (dist 2): the KJV corpus hashed by the PyTorch oracle with the
official demo's sizes (engram_vocab_size 646,400 for orders 2 and 3, 8 heads, layer 1, seed 0).

  /usr/bin/python3 gen_real_ids.py SHARED_DIR OUT.safetensors
  ENGRAM_BENCH_HASH_IDS=OUT.safetensors build/bench/memory_gather_bench

Writes hash_ids I32 [64, 4096, 16] (16 MB) from tokens 200,000.. of data/kjv.dsv3.safetensors.
"""
import os, sys
import numpy as np
import torch

shared, out = os.path.abspath(sys.argv[1]), sys.argv[2]
sys.path.insert(0, os.path.join(shared, "reference"))
from engram_ref import HashMapping, load_safetensors, save_safetensors  # noqa: E402

lookup = load_safetensors(os.path.join(shared, "data/deepseek_v3/lookup.safetensors"))["lookup"]
cfg = {"engram_vocab_size": [646400, 646400], "max_ngram_size": 3, "n_embed_per_ngram": 512,
       "n_head_per_ngram": 8, "layer_ids": [1], "pad_id": 2, "seed": 0}
hm = HashMapping(cfg, lookup.numpy().tolist())
corpus = load_safetensors(os.path.join(shared, "data/kjv.dsv3.safetensors"))["input_ids"].numpy()
batches, tokens = 64, 4096
ids = corpus[200000:200000 + batches * tokens].astype(np.int64).reshape(batches, tokens)
hashes = hm.hash(ids, 1)  # [64, 4096, 16]
print("primes", [p for per in hm.primes[1] for p in per])
save_safetensors(out, {"hash_ids": torch.from_numpy(hashes.astype(np.int32))})
print("wrote", out, hashes.shape)
