// The package as a JavaScript developer meets it: `npm pack` of wasm/pkg
// installed into the fixture apps of tests/apps — whose files are the
// README's examples — and each run as written: Node (ESM, CommonJS, code
// shared with the browser), strict `tsc` with the default lib (TypeScript
// 5.9 and 7), a Vite build with no config and an esbuild bundle with the
// README's recipe, each served on 127.0.0.1 and run in headless Chromium on
// OPFS, and Deno and Bun (the Node example, and the edge handler). Node,
// Deno and Bun load the package's fast .wasm; a browser build holds only
// the small one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { API_KEY, jwt, launch, profileDir, serve, startHub } from './support.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const wasmDir = join(here, '..');
const bin = (name) => join(wasmDir, 'node_modules', '.bin', name);
const tools = {
  node: process.execPath,
  tsc5: bin('tsc'),
  tsc7: join(wasmDir, 'node_modules', 'typescript7', 'bin', 'tsc'),
  vite: bin('vite'),
  esbuild: bin('esbuild'),
  webpack: bin('webpack'),
  workerd: bin('workerd'),
  rollup: bin('rollup'),
  deno: bin('deno'),
  bun: bin('bun'),
};

let root; // a temporary copy of tests/apps with the packed package installed
let tarball;

function run(tool, args, cwd = root) {
  return execFileSync(tools[tool] ?? tool, args, {
    cwd,
    encoding: 'utf8',
    timeout: 180_000,
    env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1' },
  });
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'spkey-apps-'));
  const packed = JSON.parse(
    execFileSync('npm', ['pack', join(wasmDir, 'pkg'), '--json', '--pack-destination', root], {
      encoding: 'utf8',
    }),
  )[0];
  tarball = packed;
  cpSync(join(here, 'apps'), root, { recursive: true });
  writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'apps', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-save', join(root, packed.filename)], {
    cwd: root,
    stdio: 'ignore',
  });
  // The bundler configs' plugins, as an app would have them installed.
  for (const plugin of ['@rollup/plugin-node-resolve', '@web/rollup-plugin-import-meta-assets']) {
    mkdirSync(dirname(join(root, 'node_modules', plugin)), { recursive: true });
    symlinkSync(join(wasmDir, 'node_modules', plugin), join(root, 'node_modules', plugin), 'dir');
  }
  writeFileSync(join(root, 'bundled', 'methods.js'), methodsModule());
});

/** Every method the package's types declare on `EventStore` (instance and
 *  static, the wasm class's and the JS-side ones), as the module the
 *  bundler fixture's worker checks them with. */
function methodsModule() {
  const types = ['spkey_store.d.ts', 'index.d.ts']
    .map((file) => readFileSync(join(wasmDir, 'pkg', 'web', file), 'utf8'))
    .join('\n');
  const methods = new Set();
  const statics = new Set();
  const blocks = types.matchAll(/(?:export class EventStore|interface EventStore|namespace EventStore) \{\n([\s\S]*?)\n\s*\}/g);
  for (const [, body] of blocks) {
    for (const [, isStatic, fn, name] of body.matchAll(/^\s+(static )?(function )?([a-zA-Z]+)\(/gm)) {
      (isStatic || fn ? statics : methods).add(name);
    }
  }
  methods.delete('free');
  assert.ok(methods.has('createUser') && methods.has('subscribe') && statics.has('openShared'), 'the types name the methods');
  return `export const methods = ${JSON.stringify([...methods])};\nexport const statics = ${JSON.stringify([...statics])};\n`;
}
after(() => rmSync(root, { recursive: true, force: true }));

/** The package's .wasm of `dir`: `web` (the small build, the one a
 *  browser may download) or `node` (the fast one). */
const packageWasm = (dir) => readFileSync(join(wasmDir, 'pkg', dir, 'spkey_store_bg.wasm'));

test('the tarball holds two wasm builds: the small one for browsers, the fast one for Node, Deno and Bun', () => {
  const wasm = tarball.files.filter((f) => f.path.endsWith('.wasm'));
  assert.deepEqual(wasm.map((f) => f.path).sort(), ['node/spkey_store_bg.wasm', 'web/spkey_store_bg.wasm']);
  const [small, fast] = ['web', 'node'].map(packageWasm);
  assert.ok(small.length < fast.length, `the browser's build is the smaller: ${small.length} against ${fast.length} bytes`);
});

/** A browser build holds one .wasm, byte for byte the small one: a page
 *  never downloads the fast build. */
function onlySmallWasm(dist) {
  const found = readdirSync(dist, { recursive: true }).map(String).filter((f) => f.endsWith('.wasm'));
  assert.equal(found.length, 1, `one .wasm in ${dist}: ${found}`);
  assert.ok(readFileSync(join(dist, found[0])).equals(packageWasm('web')), `${found[0]} is the small build`);
}

test("the READMEs' examples are the fixture apps' files", () => {
  const shown = {
    'wasm/README.md': ['node/app.mjs', 'ts/app.ts', 'web/main.js', 'web/worker.js', 'esbuild/worker.js', 'bundled/webpack.config.mjs', 'bundled/rollup.config.mjs', 'bundled/tabs.js', 'edge/handler.mjs'],
    'README.md': ['web/worker.js'],
  };
  for (const [readmePath, files] of Object.entries(shown)) {
    const readme = readFileSync(join(wasmDir, '..', readmePath), 'utf8');
    for (const file of files) {
      const source = readFileSync(join(here, 'apps', file), 'utf8').trim();
      assert.ok(readme.includes(source), `${readmePath} does not show tests/apps/${file} as it is`);
    }
  }
});

test('Node runs the ES module, CommonJS and shared examples', () => {
  assert.match(run('node', ['node/app.mjs']), /^201 [0-9a-f-]{36}\n/);
  assert.equal(run('node', ['node/app.cjs']), 'true 1\n');
  assert.equal(run('node', ['node/shared.mjs']), '0\n');
  assert.equal(run('node', ['edge/run.mjs']), '201 200 true\n');
});

for (const tsc of ['tsc5', 'tsc7']) {
  test(`strict ${tsc === 'tsc5' ? 'TypeScript 5.9' : 'TypeScript 7'} with the default lib accepts the examples and refuses the mistakes`, () => {
    run(tsc, ['-p', 'ts']); // throws, with tsc's output, on any error
  });
  test(`${tsc === 'tsc5' ? 'TypeScript 5.9' : 'TypeScript 7'} in a CommonJS project (node16) and with exactOptionalPropertyTypes + noUncheckedIndexedAccess`, () => {
    run(tsc, ['-p', 'ts-cjs']);
    run(tsc, ['-p', 'ts-strictest']);
  });
}

for (const runtime of ['deno', 'bun']) {
  test(`${runtime} runs the examples`, () => {
    const flags = runtime === 'deno' ? ['run', '--allow-read'] : [];
    assert.match(run(runtime, [...flags, 'node/app.mjs']), /^201 [0-9a-f-]{36}\n/);
    assert.equal(run(runtime, [...flags, 'node/shared.mjs']), '0\n');
    assert.equal(run(runtime, [...flags, 'edge/run.mjs']), '201 200 true\n');
    if (runtime === 'bun') assert.equal(run('bun', ['node/app.cjs']), 'true 1\n');
  });
}

test('Node, Deno and Bun load the fast build: they run with the small one gone', () => {
  const dir = join(root, 'no-small-wasm');
  mkdirSync(join(dir, 'node_modules'), { recursive: true });
  cpSync(join(root, 'node_modules', 'spkey-store'), join(dir, 'node_modules', 'spkey-store'), { recursive: true });
  cpSync(join(root, 'node'), join(dir, 'node'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'no-small-wasm', private: true, type: 'module' }));
  rmSync(join(dir, 'node_modules', 'spkey-store', 'web', 'spkey_store_bg.wasm'));
  for (const [runtime, flags] of [['node', []], ['deno', ['run', '--allow-read']], ['bun', []]]) {
    assert.match(run(runtime, [...flags, 'node/app.mjs'], dir), /^201 [0-9a-f-]{36}\n/, runtime);
  }
  assert.equal(run('node', ['node/app.cjs'], dir), 'true 1\n');
});

/** Serves `dist`, opens it in a fresh Chromium profile, and waits for the
 *  worker's answer in the page title; with `withHub`, a hub started for
 *  the page's origin is named in the page's URL. */
async function inChromium(dist, withHub = false) {
  const server = await serve({ '/': dist });
  const browser = await launch(await profileDir());
  const hub = withHub ? await startHub(server.url) : null;
  try {
    const page = await browser.context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const token = jwt({ scope: 'spkey:service', exp: Math.floor(Date.now() / 1000) + 3600 });
    const hash = hub ? `#${new URLSearchParams({ hub: hub.url, apiKey: API_KEY, token })}` : '';
    await page.goto(`${server.url}/index.html${hash}`);
    await page.waitForFunction(() => /^(created|refused|missing|failed)/.test(document.title), null, { timeout: 30_000 })
      .catch(() => assert.fail(`no answer from the worker (${errors.join('; ') || 'no page error'})`));
    return await page.title();
  } finally {
    hub?.stop();
    await browser.close();
    server.close();
  }
}

test('Vite builds the worker example with no config, and it runs in Chromium on OPFS', async () => {
  const out = run('vite', ['build', '--logLevel', 'warn'], join(root, 'web'));
  assert.doesNotMatch(out, /error/i);
  onlySmallWasm(join(root, 'web', 'dist'));
  assert.equal(await inChromium(join(root, 'web', 'dist')), 'created at 1');
});

test("the README's worker answers when the store cannot start (its .wasm missing), instead of leaving the page waiting", async () => {
  const dir = join(root, 'web-broken');
  cpSync(join(root, 'web'), dir, { recursive: true });
  rmSync(join(dir, 'dist'), { recursive: true, force: true });
  run('vite', ['build', '--logLevel', 'warn'], dir);
  const assets = join(dir, 'dist', 'assets');
  for (const file of readdirSync(assets).filter((f) => f.endsWith('.wasm'))) rmSync(join(assets, file));
  assert.match(await inChromium(join(dir, "dist")), /^refused \w*Error$/);
});

test("esbuild bundles the worker with the README's recipe, and it runs in Chromium on OPFS", async () => {
  const dir = join(root, 'esbuild');
  run('esbuild', ['worker.js', 'main.js', '--bundle', '--format=esm', '--loader:.wasm=file', '--outdir=dist', '--log-level=warning'], dir);
  cpSync(join(dir, 'index.html'), join(dir, 'dist', 'index.html'));
  onlySmallWasm(join(dir, 'dist'));
  assert.equal(await inChromium(join(dir, 'dist')), 'created at 1');
});

/** The bundler fixture (tests/apps/bundled) built by `build` in a copy of
 *  its own, run in Chromium: every method the types declare is there, a
 *  create is seen by `subscribe` and by `changes`, and `sync` pushes it to
 *  a hub started for the page. Returns the build. */
async function bundled(tool, build) {
  const dir = join(root, `bundled-${tool}`);
  cpSync(join(root, 'bundled'), dir, { recursive: true });
  build(dir);
  // Vite writes its own page; the others bundle the scripts only.
  if (!existsSync(join(dir, 'dist', 'index.html'))) cpSync(join(dir, 'index.html'), join(dir, 'dist', 'index.html'));
  onlySmallWasm(join(dir, 'dist'));
  assert.equal(await inChromium(join(dir, 'dist'), true), 'created at 1; subscribe saw 1; changes gave 1; sync pushed 1, accepted 1');
  return join(dir, 'dist');
}

/** Two tabs of the bundled page open one shared store (`openShared`, the
 *  package's worker as the bundler built it): one holds it, and a create
 *  in the other is read in the holder. Returns what `openShared` threw in
 *  the first tab instead, if it did. */
async function twoTabs(dist) {
  const server = await serve({ '/': dist });
  const browser = await launch(await profileDir());
  try {
    const tabs = [await browser.context.newPage(), await browser.context.newPage()];
    for (const tab of tabs) await tab.goto(`${server.url}/index.html`);
    const started = Date.now();
    const first = await tabs[0].evaluate(() => window.openShared().catch((e) => ({ name: e.name, message: e.message })));
    if (typeof first === 'object') return { failed: first, after: Date.now() - started };
    const holders = [first, await tabs[1].evaluate(() => window.openShared())];
    assert.equal(holders.filter(Boolean).length, 1, `one tab holds the store: ${holders}`);
    const id = crypto.randomUUID();
    const writer = tabs[holders[0] ? 1 : 0];
    const reader = tabs[holders[0] ? 0 : 1];
    const answer = await writer.evaluate((id) => window.store.createUser(id, { userId: id, email: `${id}@example.com` }), id);
    assert.equal(answer.success, true, JSON.stringify(answer));
    const seen = await reader.evaluate((id) => window.store.user(id), id);
    assert.ok(JSON.stringify(seen).includes(`${id}@example.com`), `the other tab reads the user: ${JSON.stringify(seen)}`);
    return {};
  } finally {
    await browser.close();
    server.close();
  }
}

test('Vite keeps every method the types declare, and openShared works in two tabs (no config)', { timeout: 120_000 }, async () => {
  const dist = await bundled('vite', (dir) => run('vite', ['build', '--logLevel', 'warn'], dir));
  assert.deepEqual(await twoTabs(dist), {});
});

test("esbuild keeps every method the types declare; openShared, whose worker esbuild does not build, rejects at once with a typed error, never hangs", { timeout: 120_000 }, async () => {
  const dist = await bundled('esbuild', (dir) => {
    writeFileSync(join(dir, 'wasm.js'), "export { default } from 'spkey-store/spkey_store_bg.wasm';\n");
    return run('esbuild', ['worker.js', 'main.js', '--bundle', '--format=esm', '--loader:.wasm=file', '--outdir=dist', '--log-level=warning'], dir);
  });
  const { failed, after } = await twoTabs(dist);
  assert.equal(failed?.name, 'NotSupportedError', JSON.stringify(failed));
  assert.ok(after < 10_000, `rejected after ${after} ms`);
});

test('webpack 5 keeps every method the types declare, and openShared works in two tabs (production, no loaders)', { timeout: 120_000 }, async () => {
  const dist = await bundled('webpack', (dir) => {
    // An app without "type": "module": the README's files need none.
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'webpack-app', private: true }));
    return run('webpack', ['--config', 'webpack.config.mjs', '--no-stats'], dir);
  });
  assert.deepEqual(await twoTabs(dist), {});
});

test('Rollup 4 keeps every method the types declare (node-resolve, import-meta-assets)', () =>
  bundled('rollup', (dir) => run('rollup', ['-c', 'rollup.config.mjs', '--silent'], dir)));

/** A port free on 127.0.0.1 a moment ago. */
async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// workerd (Cloudflare Workers' runtime) serving the edge handler, bundled as
// wrangler bundles it (esbuild, the `workerd` condition, the .wasm a module
// of its own), at an old compatibility date (whose runtime has no
// import.meta.url: the package's entry crashed at import there) and a new.
for (const date of ['2024-09-23', '2026-11-23']) {
  test(`workerd runs the edge handler at compatibility date ${date}: 201, then the replay's 200; subscribe, changes and sync with a hub`, { timeout: 120_000 }, async () => {
    const dir = join(root, `workerd-${date}`);
    cpSync(join(root, 'workerd'), dir, { recursive: true });
    run('esbuild', [join(dir, 'worker.mjs'), '--bundle', '--format=esm', '--conditions=workerd', '--external:*.wasm', `--outfile=${join(dir, 'dist', 'worker.js')}`, '--log-level=warning']);
    cpSync(join(root, 'node_modules', 'spkey-store', 'web', 'spkey_store_bg.wasm'), join(dir, 'dist', 'spkey_store_bg.wasm'));
    const port = await freePort();
    const config = readFileSync(join(dir, 'config.capnp.in'), 'utf8').replace('@PORT@', String(port)).replace('@DATE@', date);
    writeFileSync(join(dir, 'config.capnp'), config);
    const child = spawn(tools.workerd, ['serve', 'config.capnp'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout.on('data', (d) => { log += d; });
    child.stderr.on('data', (d) => { log += d; });
    try {
      const id = '550e8400-e29b-41d4-a716-446655440000';
      const create = () =>
        fetch(`http://127.0.0.1:${port}/users/${id}/CreateUser`, {
          method: 'POST',
          body: JSON.stringify({ userId: id, email: 'edge@example.com' }),
        });
      let first;
      for (let attempt = 0; attempt < 200 && first === undefined; attempt++) {
        first = await create().catch(() => new Promise((resolve) => setTimeout(() => resolve(undefined), 100)));
      }
      assert.ok(first, `workerd never answered: ${log}`);
      const body = await first.text();
      assert.equal(first.status, 201, `${body} ${log}`);
      assert.equal(JSON.parse(body).success, true);
      assert.equal((await create()).status, 200);
      // The JS-side methods in workerd, sync with a hub included.
      const hub = await startHub('http://127.0.0.1');
      try {
        const token = jwt({ scope: 'spkey:service', exp: Math.floor(Date.now() / 1000) + 3600 });
        const query = new URLSearchParams({ hub: hub.url, apiKey: API_KEY, token });
        const checked = await fetch(`http://127.0.0.1:${port}/check?${query}`);
        const text = await checked.text();
        assert.equal(checked.status, 200, `${text} ${log}`);
        assert.deepEqual(JSON.parse(text), { seen: [1], changed: 1, pushed: 1, accepted: 1 });
      } finally {
        hub.stop();
      }
    } finally {
      child.kill();
    }
  });
}
