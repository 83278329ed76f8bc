// Expected values of a hand-made tokenizer.json case, from Hugging Face tokenizers (npm 0.23.2).
// Run from a folder where `npm install tokenizers@0.23.2` was done:
//   node make_expected.js GEN_LOOKUP_JS CASE.json CASE.expected.json
// GEN_LOOKUP_JS is the project's reference script gen_lookup.js; its table becomes "lookup".
// The output also holds vocab_size, idToToken(id) ("tokens", null = none) and decode([id], false)
// ("decoded") of every id.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');
const { Tokenizer } = require('tokenizers');
const [genLookup, casePath, outPath] = process.argv.slice(2);
(async () => {
  const tok = Tokenizer.fromFile(casePath);
  const n = tok.getVocabSize(true);
  const tokens = [], decoded = [];
  for (let id = 0; id < n; id++) {
    tokens.push(tok.idToToken(id));
    decoded.push(await tok.decode([id], false));
  }
  const tmp = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'engram-')), 'lookup.json');
  execFileSync('node', [genLookup, casePath, tmp], { stdio: 'inherit' });
  const lut = JSON.parse(fs.readFileSync(tmp, 'utf8'));
  if (lut.vocab_size !== n) throw new Error('vocab size mismatch');
  fs.writeFileSync(outPath, JSON.stringify({ vocab_size: n, compressed_size: lut.num_new, tokens, decoded,
                                             lookup: lut.lookup }));
})();
