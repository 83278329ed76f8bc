#!/usr/bin/python3
"""The oracle's demo Engram layer run in bf16 (module and hidden states .to(torch.bfloat16), as
`engram_ref.py bench --dtype bf16` runs it) on a golden directory's weights and inputs, for
tests/layer/bf16_compute_test.cpp.

  /usr/bin/python3 tests/data/layer/make_bf16_golden.py [REFERENCE_DIR] [DIR...]   (default demo_a)

Writes DIR/expected_bf16.safetensors: output_bf16 F32 [B, T, hc, d] (the bf16 output, widened).
"""
import json, os, sys
import numpy as np
import torch

ref = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/reference"
sys.path.insert(0, ref)
from engram_ref import Engram, load_safetensors, save_safetensors  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
for name in sys.argv[2:] or ["demo_a"]:
    d = os.path.join(here, name)
    cfg = json.load(open(os.path.join(d, "config.json")))
    weights = load_safetensors(os.path.join(d, "weights.safetensors"))
    inputs = load_safetensors(os.path.join(d, "inputs.safetensors"))
    expected = load_safetensors(os.path.join(d, "expected.safetensors"))
    heads, n = cfg["n_head_per_ngram"], cfg["max_ngram_size"]
    primes = expected["primes"].numpy().reshape(n - 1, heads).tolist()

    class Hash:  # only the primes are read: hash ids come precomputed
        def __init__(self):
            self.primes = {0: primes}

    m = Engram(cfg, Hash(), 0)
    own = m.state_dict_official()
    with torch.no_grad():
        for key, t in own.items():
            if key == "multi_head_embedding.offsets":
                assert torch.equal(t, weights[key].to(t.dtype)), "offsets differ"
                continue
            t.copy_(weights[key].to(t.dtype).reshape(t.shape))
        f32 = m(inputs["hidden_states"], None, expected["hash_ids"])
        m = m.to(torch.bfloat16)
        out = m(inputs["hidden_states"].to(torch.bfloat16), None, expected["hash_ids"])
    err = (f32 - expected["output"]).abs().max().item()
    assert err < 1e-5, f"{name}: the f32 module does not reproduce expected output ({err})"
    save_safetensors(os.path.join(d, "expected_bf16.safetensors"), {"output_bf16": out.float()})
    scale = expected["output"].abs().max().item()
    print(name, "max |bf16 - f32 oracle|", (out.float() - expected["output"]).abs().max().item(),
          "max |f32 oracle|", scale)
