// Golden values of HF tokenizers 0.23.2 normalisers, for engram's normalizer tests.
// Run from a folder where `npm install tokenizers@0.23.2` was done:
//   node gen_unicode_golden.js STRINGS.json unicode_codepoints.json unicode_strings.json
// STRINGS.json is a JSON array of test strings (the committed ones are the "strings" of
// unicode_strings.json.gz). Output 1: for each normaliser, every code point whose one-character
// string it changes, with the result. Output 2: each normaliser applied to each string.
const fs = require('fs'); const os = require('os'); const path = require('path');
const { Tokenizer } = require('tokenizers');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-'));
const SENT = '\uE000';
const specs = {
  compression: { type: 'Sequence', normalizers: [
    { type: 'NFKC' }, { type: 'NFD' }, { type: 'StripAccents' }, { type: 'Lowercase' },
    { type: 'Replace', pattern: { Regex: '[ \\t\\r\\n]+' }, content: ' ' },
    { type: 'Replace', pattern: { Regex: '^ $' }, content: SENT },
    { type: 'Strip', strip_left: true, strip_right: true },
    { type: 'Replace', pattern: { String: SENT }, content: ' ' }]},
  NFC: { type: 'NFC' }, NFD: { type: 'NFD' }, NFKC: { type: 'NFKC' }, NFKD: { type: 'NFKD' },
  Lowercase: { type: 'Lowercase' }, StripAccents: { type: 'StripAccents' },
  Strip: { type: 'Strip', strip_left: true, strip_right: true },
  StripLeft: { type: 'Strip', strip_left: true, strip_right: false },
  Nmt: { type: 'Nmt' }, ByteLevel: { type: 'ByteLevel' },
  Replace: { type: 'Replace', pattern: { String: 'a\u0301' }, content: '<\u00e1>' },
  ReplaceEmpty: { type: 'Replace', pattern: { String: '' }, content: '|' },
  Prepend: { type: 'Prepend', prepend: '\u2581' },
};
const norm = {};
for (const [k, spec] of Object.entries(specs)) {
  const p = path.join(dir, k + '.json');
  fs.writeFileSync(p, JSON.stringify({ version: '1.0', added_tokens: [], normalizer: spec, decoder: null,
    model: { type: 'WordLevel', vocab: {}, unk_token: 'x' } }));
  norm[k] = Tokenizer.fromFile(p).getNormalizer();
}
const cpSteps = ['compression', 'NFC', 'NFD', 'NFKC', 'NFKD', 'Lowercase', 'StripAccents', 'Strip'];
const cp = {};
for (const k of cpSteps) {
  const diffs = [];
  for (let c = 0; c <= 0x10FFFF; c++) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    const s = String.fromCodePoint(c), r = norm[k].normalizeString(s);
    if (r !== s) diffs.push([c, r]);
  }
  cp[k] = diffs;
}
fs.writeFileSync(process.argv[3], JSON.stringify({ source: 'tokenizers 0.23.2 (npm)', note: 'code points whose single-character string each normaliser changes, with the result', steps: cp }));
const strings = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const out = { source: 'tokenizers 0.23.2 (npm)', strings, results: {} };
for (const k of Object.keys(specs)) out.results[k] = strings.map(s => norm[k].normalizeString(s));
fs.writeFileSync(process.argv[4], JSON.stringify(out));
