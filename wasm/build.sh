#!/usr/bin/env bash
# Builds the npm package `spkey-store` into wasm/pkg/:
#   pkg/web/   ES module for browsers, workers and bundlers (call init() first)
#   pkg/node/  CommonJS for Node (ready on require/import)
# with package.json, the .d.ts types generated from the Rust types, and the
# package README. wasm-opt comes from npm's binaryen (Debian's is too old for
# wasm-bindgen's output). Needs what scripts/setup installs.
set -euo pipefail
cd "$(dirname "$0")"

cargo build -p spkey-store-wasm --target wasm32-unknown-unknown --profile wasm-release --locked
wasm=../target/wasm32-unknown-unknown/wasm-release/spkey_store_wasm.wasm

rm -rf pkg
for target in web node; do
  flavour=$target
  [ "$target" = node ] && flavour=nodejs
  wasm-bindgen --target "$flavour" --out-dir "pkg/$target" --out-name spkey_store "$wasm"
  # --low-memory-unused lets wasm-opt fold constant offsets into loads and
  # stores (2.6 KB gzipped). Rust lays the stack out first, so the low 1 KiB
  # is the bottom of a 1 MiB stack: reached only by an overflow, which is
  # already fatal.
  node_modules/.bin/wasm-opt -Oz --converge --low-memory-unused --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types \
    "pkg/$target/spkey_store_bg.wasm" -o "pkg/$target/spkey_store_bg.wasm"
done
echo '{ "type": "module" }' > pkg/web/package.json
echo '{ "type": "commonjs" }' > pkg/node/package.json

# The package's own JS (js/sync.js: EventStore.prototype.sync over fetch),
# as an ES module and a CommonJS module, installed by each entry point.
{ cat js/sync.js; echo 'export { installSync };'; } > pkg/web/sync.js
{ cat js/sync.js; echo 'module.exports = { installSync };'; } > pkg/node/sync.js
cat > pkg/web/index.js <<'JS'
import { EventStore } from './spkey_store.js';
import { installSync } from './sync.js';
installSync(EventStore);
export * from './spkey_store.js';
export { default } from './spkey_store.js';
JS
cat > pkg/node/index.js <<'JS'
const store = require('./spkey_store.js');
require('./sync.js').installSync(store.EventStore);
module.exports = store;
JS
types='
/** Options of `EventStore.sync`. */
export interface SyncOptions { apiKey: string; token: string; signal?: AbortSignal }
/** What `EventStore.sync` did. */
export interface SyncSummary { pushed: number; accepted: number; rejected: number; pulled: number; cursor: number }
declare module "./spkey_store.js" {
  interface EventStore {
    /** Syncs with a spkey-hub over fetch: push, apply the reply, pull until caught up. Safe to call again after any failure. Throws `HubUnreachableError` or `HubRefusedError` (with `status`). */
    sync(url: string, options: SyncOptions): Promise<SyncSummary>;
  }
}'
for target in web node; do
  { echo 'export * from "./spkey_store.js";'; [ "$target" = web ] && echo 'export { default } from "./spkey_store.js";'; echo "$types"; } > "pkg/$target/index.d.ts"
done

version=$(cargo metadata --format-version 1 --no-deps \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).packages.find(p=>p.name==="spkey-store-wasm").version))')
cat > pkg/package.json <<JSON
{
  "name": "spkey-store",
  "version": "$version",
  "description": "Embedded, offline-first replica of the SmartphoneKey Users API: POST /users/{id}/CreateUser answered locally, in browsers (OPFS), Node and edge runtimes.",
  "license": "MIT OR Apache-2.0",
  "exports": {
    ".": {
      "node": {
        "types": "./node/index.d.ts",
        "default": "./node/index.js"
      },
      "default": {
        "types": "./web/index.d.ts",
        "default": "./web/index.js"
      }
    }
  },
  "main": "./node/index.js",
  "module": "./web/index.js",
  "types": "./web/index.d.ts",
  "files": ["web", "node", "README.md"],
  "sideEffects": false
}
JSON
cp README.md pkg/README.md
size=$(gzip -9 -c pkg/web/spkey_store_bg.wasm | wc -c)
echo "spkey-store: pkg/web/spkey_store_bg.wasm $(wc -c < pkg/web/spkey_store_bg.wasm) bytes, $size gzipped"
