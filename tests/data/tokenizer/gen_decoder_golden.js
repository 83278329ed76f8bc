// Golden multi-token decodes of HF tokenizers 0.23.2, for engram's decoder tests.
// Run from a folder where `npm install tokenizers@0.23.2` was done:
//   node gen_decoder_golden.js decoder_cases.json
// Reads the file's "cases" ({name, decoder, tokens}) and writes each case's "expected": HF
// Tokenizer.decode of the tokens (a WordLevel vocab of the distinct tokens, decoder as given;
// decoder null means none).
const fs = require('fs'); const os = require('os'); const path = require('path');
const { Tokenizer } = require('tokenizers');
const file = process.argv[2];
const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-'));
(async () => {
  for (const c of doc.cases) {
    const vocab = {};
    for (const t of c.tokens) if (!(t in vocab)) vocab[t] = Object.keys(vocab).length;
    const p = path.join(dir, 'tok.json');
    fs.writeFileSync(p, JSON.stringify({ version: '1.0', added_tokens: [], normalizer: null, decoder: c.decoder,
      model: { type: 'WordLevel', vocab, unk_token: c.tokens.length ? c.tokens[0] : 'x' } }));
    c.expected = await Tokenizer.fromFile(p).decode(c.tokens.map(t => vocab[t]), false);
  }
  doc.source = 'tokenizers 0.23.2 (npm)';
  fs.writeFileSync(file, JSON.stringify(doc, null, 1));
})();
