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

for (const flatten of [0, 1]) {
  let n = 0;
  for (let i = 0; i < 50; i++) n = e.stage1(doc.length, flatten); // TurboFan first
  if (n !== expected) throw new Error(`stage1 found ${n} structurals, the reference ${expected}`);
  const times = [];
  for (let round = 0; round < 9; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 50; i++) e.stage1(doc.length, flatten);
    times.push(Number(process.hrtime.bigint() - t0) / 50);
  }
  const ns = times.sort((a, b) => a - b)[4];
  console.log(`${flatten ? 'indexed' : 'counted'}: ${n} structurals, median ` +
              `${(ns / 1000).toFixed(1)} µs per document, ${(doc.length / ns * 1000).toFixed(0)} MB/s`);
}

// Stage 2 for skimming: the whole document validated over the structurals (UTF-8 apart, then with it).
for (const utf8 of [0, 1, 2, 4, 6]) {
  let n = 0;
  for (let i = 0; i < 50; i++) n = e.skim(doc.length, utf8);
  if ((n >>> 0) === 0xffffffff) throw new Error('skim refused the document');
  const times = [];
  for (let round = 0; round < 9; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 50; i++) e.skim(doc.length, utf8);
    times.push(Number(process.hrtime.bigint() - t0) / 50);
  }
  const ns = times.sort((a, b) => a - b)[4];
  console.log(`skim${["", "+from_utf8", "+simd_utf8", "", "table", "", "table+simd_utf8"][utf8]}: ${n} structurals, median ` +
              `${(ns / 1000).toFixed(1)} µs per document, ${(doc.length / ns * 1000).toFixed(0)} MB/s`);
}

// Two phases: the index written eight offsets at a time, then stage 2 over it.
for (const members of [0, 1]) {
  let n = 0;
  for (let i = 0; i < 50; i++) n = e.skim2(doc.length, members);
  if ((n >>> 0) === 0xffffffff) throw new Error('skim2 refused the document');
  const times = [];
  for (let round = 0; round < 9; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 50; i++) e.skim2(doc.length, members);
    times.push(Number(process.hrtime.bigint() - t0) / 50);
  }
  const ns = times.sort((a, b) => a - b)[4];
  console.log(`skim2${members ? ' (a member at a time)' : ' (a token at a time)'}: ${n} structurals, median ` +
              `${(ns / 1000).toFixed(1)} µs per document, ${(doc.length / ns * 1000).toFixed(0)} MB/s`);
}
