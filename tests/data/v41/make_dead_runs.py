#!/usr/bin/python3
"""Hash ids of image-token runs at the start, middle and end of sequences, from the oracle's V41Hash
(/work/shared/reference/v41_ref.py) on golden/model's config: writes dead_runs.safetensors with
input_ids I64 [4, 24] and hash_ids_layer1 / hash_ids_layer3 I64 [4, 24, 6].
Run: /usr/bin/python3 make_dead_runs.py /work/shared/reference (from this directory)."""
import json, os, sys

import numpy as np

sys.path.insert(0, sys.argv[1])
from v41_ref import V41Hash, load_lookup, st_write  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
cfg = json.load(open(os.path.join(here, "golden/model/config.json")))
tc = cfg["text_config"]
lookup = load_lookup(os.path.join(here, "../tokenizer/deepseek_v3/lookup.safetensors"))
hm = V41Hash(tc, lookup)
rng = np.random.default_rng(2026)
B, T = 4, 24
ids = rng.integers(0, len(lookup), size=(B, T), dtype=np.int64)
ids[:, 10:14] = ids[:, 0:4]  # a repeated phrase
dead = np.zeros((B, T), dtype=bool)
dead[0, 0:3] = True          # run at the start
dead[1, T - 4:] = True       # run at the end
dead[2, 0] = dead[2, T - 1] = True
dead[2, 7] = dead[2, 9] = True  # two dead tokens one live token apart
dead[3, :] = True            # all image tokens
ids[dead] = cfg["image_token_id"]
out = {"input_ids": ("I64", ids.shape, ids.tobytes())}
for lid in tc["engram_layer_ids"]:
    h = hm.hash(ids, dead, lid)
    out[f"hash_ids_layer{lid}"] = ("I64", h.shape, h.astype(np.int64).tobytes())
st_write(os.path.join(here, "dead_runs.safetensors"), out)
print("dead_runs.safetensors written")
