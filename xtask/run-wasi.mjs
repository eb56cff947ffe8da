// Runs a wasm32-wasip1 program under Node's built-in WASI (used by `cargo xtask test` to check
// that sim-core gives the same traces on wasm as natively).
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv } from 'node:process';

const wasi = new WASI({ version: 'preview1', args: [argv[2]], env: {} });
const wasm = await WebAssembly.compile(await readFile(argv[2]));
const instance = await WebAssembly.instantiate(wasm, wasi.getImportObject());
wasi.start(instance);
