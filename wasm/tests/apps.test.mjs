// The package as a JavaScript developer meets it: `npm pack` of wasm/pkg
// installed into the fixture apps of tests/apps — whose files are the
// README's examples — and each run as written: Node (ESM, CommonJS, code
// shared with the browser), strict `tsc` with the default lib (TypeScript
// 5.9 and 7), a Vite build with no config and an esbuild bundle with the
// README's recipe, each served on 127.0.0.1 and run in headless Chromium on
// OPFS, and Deno and Bun (the Node example, and the edge handler).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, launch, profileDir } from './support.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const wasmDir = join(here, '..');
const bin = (name) => join(wasmDir, 'node_modules', '.bin', name);
const tools = {
  node: process.execPath,
  tsc5: bin('tsc'),
  tsc7: join(wasmDir, 'node_modules', 'typescript7', 'bin', 'tsc'),
  vite: bin('vite'),
  esbuild: bin('esbuild'),
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
});
after(() => rmSync(root, { recursive: true, force: true }));

test('the tarball holds one wasm', () => {
  const wasm = tarball.files.filter((f) => f.path.endsWith('.wasm'));
  assert.deepEqual(wasm.map((f) => f.path), ['web/spkey_store_bg.wasm']);
});

test("the READMEs' examples are the fixture apps' files", () => {
  const shown = {
    'wasm/README.md': ['node/app.mjs', 'ts/app.ts', 'web/main.js', 'web/worker.js', 'esbuild/worker.js', 'edge/handler.mjs'],
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

/** Serves `dist`, opens it in a fresh Chromium profile, and waits for the
 *  worker's answer in the page title. */
async function inChromium(dist) {
  const server = await serve({ '/': dist });
  const browser = await launch(await profileDir());
  try {
    const page = await browser.context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}/index.html`);
    await page.waitForFunction(() => document.title.startsWith('created') || document.title.startsWith('refused'), null, { timeout: 30_000 })
      .catch(() => assert.fail(`no answer from the worker (${errors.join('; ') || 'no page error'})`));
    return await page.title();
  } finally {
    await browser.close();
    server.close();
  }
}

test('Vite builds the worker example with no config, and it runs in Chromium on OPFS', async () => {
  const out = run('vite', ['build', '--logLevel', 'warn'], join(root, 'web'));
  assert.doesNotMatch(out, /error/i);
  assert.equal(await inChromium(join(root, 'web', 'dist')), 'created at 1');
});

test("esbuild bundles the worker with the README's recipe, and it runs in Chromium on OPFS", async () => {
  const dir = join(root, 'esbuild');
  run('esbuild', ['worker.js', 'main.js', '--bundle', '--format=esm', '--loader:.wasm=file', '--outdir=dist', '--log-level=warning'], dir);
  cpSync(join(dir, 'index.html'), join(dir, 'dist', 'index.html'));
  assert.ok(readdirSync(join(dir, 'dist')).some((f) => f.endsWith('.wasm')), 'esbuild emitted the wasm');
  assert.equal(await inChromium(join(dir, 'dist')), 'created at 1');
});
