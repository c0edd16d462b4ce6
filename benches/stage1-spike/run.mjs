// node --no-liftoff run.mjs <stage1_spike.wasm> <document.json>: stage 1's speed in V8,
// checked against a byte-by-byte count of the same structurals.
import fs from 'fs';

const [wasmPath, docPath] = process.argv.slice(2);
const doc = fs.readFileSync(docPath);
const { instance } = await WebAssembly.instantiate(fs.readFileSync(wasmPath), {});
const e = instance.exports;
const blocks = doc.length - (doc.length % 64);
const ptr = e.alloc(doc.length); // may grow the memory: take its buffer after
new Uint8Array(e.memory.buffer, ptr, doc.length).set(doc);

// The reference: operators outside strings, and unescaped quotes, in the whole blocks.
let expected = 0, inString = false, escape = false;
for (let i = 0; i < blocks; i++) {
  const b = doc[i];
  if (inString) {
    if (escape) escape = false;
    else if (b === 0x5c) escape = true;
    else if (b === 0x22) { inString = false; expected++; }
  } else if (b === 0x22) { inString = true; expected++; }
  else if ('{}[]:,'.includes(String.fromCharCode(b))) expected++;
}

// Times `run` (which returns a structural count, u32::MAX for a refusal): 50 calls to let
// TurboFan compile it, then the median of 9 rounds of 50.
function time(label, run, expected) {
  let n = 0;
  for (let i = 0; i < 50; i++) n = run() >>> 0;
  if (n === 0xffffffff) throw new Error(`${label} refused the document`);
  if (expected !== undefined && n !== expected) {
    throw new Error(`${label} found ${n} structurals, the reference ${expected}`);
  }
  const times = [];
  for (let round = 0; round < 9; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 50; i++) run();
    times.push(Number(process.hrtime.bigint() - t0) / 50);
  }
  const ns = times.sort((a, b) => a - b)[4];
  console.log(`${label}: ${n} structurals, median ${(ns / 1000).toFixed(1)} µs per document, ` +
              `${(doc.length / ns * 1000).toFixed(0)} MB/s`);
}

// Stage 1 alone, over the whole blocks: counted, then written to an index.
time('counted', () => e.stage1(doc.length, 0), expected);
time('indexed', () => e.stage1(doc.length, 1), expected);

// A validating skim of the whole document (see skim's modes in src/lib.rs).
const modes = { skim: 0, 'skim+from_utf8': 1, 'skim+simd_utf8': 2, skimtable: 4, 'skimtable+simd_utf8': 6 };
for (const [label, mode] of Object.entries(modes)) time(label, () => e.skim(doc.length, mode));

// Two phases: the index written eight offsets at a time, then stage 2 over it.
time('skim2 (a token at a time)', () => e.skim2(doc.length, 0));
time('skim2 (a member at a time)', () => e.skim2(doc.length, 1));
