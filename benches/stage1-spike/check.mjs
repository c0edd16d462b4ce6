// node check.mjs <stage1_spike.wasm> <JSONTestSuite/test_parsing>: the validating skim
// against the conformance suite's y_ (accept) and n_ (refuse) documents whose root is an
// object or array (the skim reads containers only), and the i_ ones with invalid UTF-8
// (refused by finalite).
import fs from 'fs';
import path from 'path';

const [wasmPath, dir] = process.argv.slice(2);
const { instance } = await WebAssembly.instantiate(fs.readFileSync(wasmPath), {});
const e = instance.exports;
let checked = 0, wrong = [];
for (const name of fs.readdirSync(dir).sort()) {
  let doc = fs.readFileSync(path.join(dir, name));
  // i_ documents: implementation-defined; those with invalid UTF-8 are refused by finalite.
  let accept = name.startsWith('y_');
  if (name.startsWith('i_')) {
    try { new TextDecoder('utf-8', { fatal: true }).decode(doc); continue; } catch { accept = false; }
  } else if (!name.startsWith('n_') && !accept) continue;
  // The skim starts at a container: trim leading JSON whitespace, require [ or {.
  let start = 0;
  while (start < doc.length && ' \t\n\r'.includes(String.fromCharCode(doc[start]))) start++;
  if (start >= doc.length || (doc[start] !== 0x5b && doc[start] !== 0x7b)) continue;
  let end = doc.length;
  while (end > start && ' \t\n\r'.includes(String.fromCharCode(doc[end - 1]))) end--;
  doc = doc.subarray(start, end);
  for (const mode of [2, 6, 8, 9]) {
    const ptr = e.alloc(doc.length);
    new Uint8Array(e.memory.buffer, ptr, doc.length).set(doc);
    const ok = (mode < 8 ? e.skim(doc.length, mode) : e.skim2(doc.length, mode - 8)) >>> 0 !== 0xffffffff;
    if (ok !== accept) wrong.push(`${name} (mode ${mode}): ${ok ? 'accepted' : 'refused'}`);
  }
  checked++;
}
console.log(`${checked} container documents checked, ${wrong.length} wrong`);
for (const w of wrong) console.log('  ' + w);
