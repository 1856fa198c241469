#!/usr/bin/env bash
# Builds the npm package `spkey-store` into wasm/pkg/:
#   pkg/web/   ES module for browsers, workers and bundlers (call init() first),
#              the small .wasm (built for size: a page downloads it), and the
#              entry for workerd
#   pkg/node/  CommonJS for Node, Deno and Bun, with an ES module wrapper
#              (ready on require/import; init() is a no-op there, for shared
#              code), and the fast .wasm (built for speed: read from disk)
# with package.json, the .d.ts types generated from the Rust types, and the
# package README. wasm-opt comes from npm's binaryen (Debian's is too old for
# wasm-bindgen's output). Needs what scripts/setup installs.
set -euo pipefail
cd "$(dirname "$0")"

# std is rebuilt with the package (nightly's -Zbuild-std) so that a panic
# aborts at once instead of formatting its message, which a wasm32 build
# has nowhere to print: 29 KB gzipped of formatting and location data
# gone, the same trap (a RuntimeError "unreachable") for JS. No input is
# meant to panic; the tests hold the store to that. A panic that prints
# nothing has no use for where it happened: -Zlocation-detail=none drops
# the file names and line numbers kept for it (0.9 KB gzipped). Nothing
# the package shows goes through Debug (errors reach JS through Display,
# and a thrown JS value through its JSON): -Zfmt-debug=none drops the
# Debug formatting (2.2 KB gzipped). std's `optimize_for_size` feature
# picks its smaller algorithms (sorting, integer formatting): 5.3 KB
# gzipped, which paid for DeleteUser and erasure (2.9 KB); createUser's
# throughput moved within this machine's noise (docs/javascript.md).
# Cargo.toml's profile sets std's own crates (core, alloc, dlmalloc) to
# "s"; cargo applies that to the std it rebuilds but still warns that the
# names match no package of the workspace: those three warnings are dropped.
build() { # PROFILE [cargo args…]
  RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Zfmt-debug=none" \
    cargo +nightly build -p spkey-store-wasm --target wasm32-unknown-unknown --profile "$1" --locked \
    -Zbuild-std=std,panic_abort "${@:2}" \
    2> >(grep -Ev '^warning: profile package spec `(core|alloc|dlmalloc)` in profile `wasm-release` did not match any packages$' >&2)
}
build wasm-release -Zbuild-std-features=optimize_for_size
# Node, Deno and Bun read their .wasm from disk, where its size costs
# nothing: the same code built for speed (profile `wasm-fast`, every crate
# at level 3, std's fast algorithms; event ids' random bits from rand's
# generator, not one call into the host's crypto each), the same panic
# that aborts at once.
build wasm-fast --features fast-ids
small=../target/wasm32-unknown-unknown/wasm-release/spkey_store_wasm.wasm
fast=../target/wasm32-unknown-unknown/wasm-fast/spkey_store_wasm.wasm

rm -rf pkg
# Each .wasm with its own glue: wasm-bindgen's import names carry hashes of
# the build, so one glue cannot load the other's .wasm.
wasm-bindgen --target web --out-dir pkg/web --out-name spkey_store "$small"
wasm-bindgen --target nodejs --out-dir pkg/node --out-name spkey_store "$fast"
rm pkg/node/spkey_store_bg.wasm.d.ts
features=(--enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals --enable-reference-types)
# --low-memory-unused lets wasm-opt fold constant offsets into loads and
# stores (2.6 KB gzipped). Rust lays the stack out first, so the low 1 KiB
# is the bottom of a 1 MiB stack: reached only by an overflow, which is
# already fatal.
node_modules/.bin/wasm-opt -Oz --converge --low-memory-unused "${features[@]}" \
  pkg/web/spkey_store_bg.wasm -o pkg/web/spkey_store_bg.wasm
node_modules/.bin/wasm-opt -O3 --low-memory-unused "${features[@]}" \
  pkg/node/spkey_store_bg.wasm -o pkg/node/spkey_store_bg.wasm
# wasm-bindgen's classes declare [Symbol.dispose]: name the lib it is in, so
# `tsc` with its default lib accepts the types (no skipLibCheck needed).
for target in web node; do
  sed -i '1i /// <reference lib="esnext.disposable" />' "pkg/$target/spkey_store.d.ts"
done
echo '{ "type": "module" }' > pkg/web/package.json
echo '{ "type": "commonjs" }' > pkg/node/package.json

# The package's own JS (js/sync.js: EventStore.prototype.sync over fetch),
# as an ES module and a CommonJS module, installed by each entry point.
{ cat js/sync.js; echo 'export { installSync };'; } > pkg/web/sync.js
{ cat js/sync.js; echo 'module.exports = { installSync };'; } > pkg/node/sync.js
{ cat js/subscribe.js; echo 'export { installSubscribe, checkSubscription, iterate };'; } > pkg/web/subscribe.js
{ cat js/subscribe.js; echo 'module.exports = { installSubscribe };'; } > pkg/node/subscribe.js
{ echo "import { checkSubscription, iterate } from './subscribe.js';"; cat js/shared.js; echo 'export { installShared };'; } > pkg/web/shared.js
cp js/shared-worker.js pkg/web/shared-worker.js
# The entry points install the package's JS methods on EventStore when they
# load: package.json names them (and only them) as having side effects, or
# bundlers drop the installs and the methods the types promise are missing.
cat > pkg/web/index.js <<'JS'
import { EventStore } from './spkey_store.js';
import { installSync } from './sync.js';
import { installSubscribe } from './subscribe.js';
import { installShared } from './shared.js';
installSync(EventStore);
installSubscribe(EventStore);
// Written out here so that bundlers see the worker and build it as one.
installShared(EventStore, () => new Worker(new URL('./shared-worker.js', import.meta.url), { type: 'module' }));
export * from './spkey_store.js';
export { default } from './spkey_store.js';
JS
cat > pkg/node/index.js <<'JS'
const store = require('./spkey_store.js');
require('./sync.js').installSync(store.EventStore);
require('./subscribe.js').installSubscribe(store.EventStore);
// Sharing a store between tabs needs a browser (Workers, Web Locks).
store.EventStore.openShared = async () => {
  throw Object.assign(new Error('openShared needs Worker, BroadcastChannel and Web Locks (a browser)'), { name: 'NotSupportedError' });
};
// Ready on require: init() is a no-op here, so code shared with the
// browser (`await init()`) runs unchanged.
const init = async () => ({});
module.exports = { ...store, default: init, initSync: () => ({}) };
JS
cat > pkg/node/index.mjs <<'JS'
// Node's ES module entry: the CommonJS module (one instance for both), with
// the browser entry's default export, a no-op init.
import store from './index.js';
export const { EventStore } = store;
export const initSync = store.initSync;
export default store.default;
JS
# workerd (Cloudflare Workers): its bundler imports a .wasm as a
# WebAssembly.Module; ready on import.
cat > pkg/web/workerd.js <<'JS'
import wasmModule from './spkey_store_bg.wasm';
import { initSync } from './spkey_store.js';
initSync({ module: wasmModule });
export * from './index.js';
export default async function init() { return {}; }
JS
types='
import type { RecordedEvent } from "./spkey_store.js";
/** Options of `EventStore.sync`. */
export interface SyncOptions { apiKey: string; /** A string, or a function called before each request (and once more after a 401) giving one. */ token: string | (() => string | Promise<string>); signal?: AbortSignal }
/** What `EventStore.sync` did. */
export interface SyncSummary { pushed: number; accepted: number; rejected: number; pulled: number; cursor: number }
declare module "./spkey_store.js" {
  interface EventStore {
    /** Syncs with a spkey-hub over fetch: push, apply the reply, pull until caught up. Safe to call again after any failure. Throws `InvalidArgumentError` (a URL that is not absolute http(s), before any request), `HubUnreachableError`, `HubRefusedError` (with `status`), or `AbortError` / `TimeoutError` when `signal` stops it. */
    sync(url: string, options: SyncOptions): Promise<SyncSummary>;
    /** Calls `onEvent` with every event after `fromPosition`, once each, in position order: those recorded already, then each as it is recorded (by this store object: commands, replies, imports). Returns the unsubscribe function. */
    subscribe(fromPosition: number, onEvent: (event: RecordedEvent) => void): () => void;
    /** The events after `fromPosition` (default: the head now) as an async iterator that waits for new ones; `break` ends it. */
    changes(fromPosition?: number): AsyncIterableIterator<RecordedEvent>;
  }
  namespace EventStore {
    /** One OPFS store for every tab of the origin (any window or worker): one tab'"'"'s worker holds it, elected with a Web Lock; the others reach it over a BroadcastChannel; when the holder'"'"'s tab closes or crashes another takes over. Browser only (`NotSupportedError` elsewhere). Rejects when this tab'"'"'s worker cannot start (`NotSupportedError`, or the store'"'"'s own error such as `CorruptStoreError`), and with `TimeoutError` when no holder answers within `timeoutMs` (30 s). */
    function openShared(name: string, options?: { worker?: (name: string) => Worker; timeoutMs?: number }): Promise<SharedEventStore>;
  }
}
/** The store `EventStore.openShared` opens: the same methods, async. */
export interface SharedEventStore {
  /** Whether this tab'"'"'s worker holds the store now. */
  readonly isHolder: boolean;
  createUser(id: string, body: import("./spkey_store.js").CreateUserRequest | string): Promise<import("./spkey_store.js").CreateUserResponse | import("./spkey_store.js").ErrorResponse>;
  createUserWithStatus(id: string, body: import("./spkey_store.js").CreateUserRequest | string): Promise<import("./spkey_store.js").CreateUserAnswer>;
  updateUser(id: string, body: import("./spkey_store.js").UpdateUserRequest | string): Promise<import("./spkey_store.js").UpdateUserResponse | import("./spkey_store.js").ErrorResponse>;
  deleteUser(id: string, body?: import("./spkey_store.js").DeleteUserRequest | string): Promise<import("./spkey_store.js").DeleteUserResponse | import("./spkey_store.js").ErrorResponse>;
  user(id: string): Promise<import("./spkey_store.js").User | null>;
  events(fromPosition?: number, limit?: number): Promise<RecordedEvent[]>;
  headPosition(): Promise<number>;
  verify(): Promise<void>;
  snapshot(): Promise<Uint8Array>;
  push(): Promise<Uint8Array>;
  applyReply(reply: Uint8Array): Promise<{ accepted: number; rejected: number; alreadyApplied: number }>;
  importBatch(batch: Uint8Array): Promise<{ imported: number; own: number; rebased: number; cursor: number }>;
  pullCursor(): Promise<number>;
  pending(): Promise<RecordedEvent[]>;
  rejections(): Promise<RecordedEvent[]>;
  sync(url: string, options: { apiKey: string; token: string | (() => string | Promise<string>) }): Promise<SyncSummary>;
  subscribe(fromPosition: number, onEvent: (event: RecordedEvent) => void): () => void;
  changes(fromPosition?: number): AsyncIterableIterator<RecordedEvent>;
  /** Stops this tab'"'"'s worker; another tab'"'"'s takes over if it held the store. */
  close(): void;
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
      "workerd": "./web/workerd.js",
      "node": {
        "import": { "types": "./web/index.d.ts", "default": "./node/index.mjs" },
        "require": { "types": "./node/index.d.ts", "default": "./node/index.js" }
      },
      "types": "./web/index.d.ts",
      "default": "./web/index.js"
    },
    "./spkey_store_bg.wasm": "./web/spkey_store_bg.wasm",
    "./shared-worker.js": "./web/shared-worker.js",
    "./package.json": "./package.json"
  },
  "main": "./node/index.js",
  "module": "./web/index.js",
  "types": "./web/index.d.ts",
  "files": ["web", "node", "README.md"],
  "sideEffects": ["./web/index.js", "./web/workerd.js", "./node/index.js", "./node/index.mjs"]
}
JSON
cp README.md pkg/README.md
size=$(gzip -9 -c pkg/web/spkey_store_bg.wasm | wc -c)
echo "spkey-store: pkg/web/spkey_store_bg.wasm $(wc -c < pkg/web/spkey_store_bg.wasm) bytes, $size gzipped; pkg/node/spkey_store_bg.wasm (fast) $(wc -c < pkg/node/spkey_store_bg.wasm) bytes"
