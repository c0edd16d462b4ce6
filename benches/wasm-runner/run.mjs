// Runs the wasm32-wasip1 build of the engine benchmark inside Node's V8.
//   node run.mjs wasm-runner.wasm [ARGS...]
// The finalite crate links its proxy-wasm adapter on wasm32, which imports the host's
// `proxy_*` functions; the benchmark never calls them, so they are stubs that throw.
import { readFile } from "node:fs/promises";
import { argv } from "node:process";
import { WASI } from "node:wasi";

const wasi = new WASI({ version: "preview1", args: ["wasm-runner", ...argv.slice(3)], env: {} });
const module = await WebAssembly.compile(await readFile(argv[2]));
const imports = wasi.getImportObject();
for (const { module: from, name, kind } of WebAssembly.Module.imports(module)) {
  if (from !== "env" || kind !== "function") continue;
  imports.env ??= {};
  imports.env[name] = () => {
    throw new Error(`host function ${name} called by the benchmark`);
  };
}
const instance = await WebAssembly.instantiate(module, imports);
// The adapter also exports the reactor's `_initialize`, which WASI.start refuses next to
// `_start`: hand it the command's exports only.
const { _start, memory } = instance.exports;
wasi.start({ exports: { _start, memory } });
