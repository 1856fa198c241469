// createUser throughput, one script, every runtime: native Rust (in
// memory); the npm package in Node, Deno and Bun (in memory, the fast
// .wasm their entry loads), and in Node with the browsers' small .wasm for
// comparison; and in headless Chromium (a dedicated Worker, in memory and
// on OPFS with every command durable), on a first visit and on a second
// visit in the same profile. Same requests everywhere; prints a table with
// each figure's ratio to native and the targets' verdicts, and with N ≥
// 5000 writes it to wasm/bench/results/throughput.md. A JS engine compiles
// wasm in tiers while it runs, so each in-memory figure is given cold (a
// fresh process or worker's first N commands) and warm (N more on a fresh
// store, same process).
//
//   node wasm/bench/throughput.mjs [N]        (after bash wasm/build.sh)
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, launch, profileDir } from '../tests/support.mjs';

const n = Number(process.argv[2] ?? 5000);
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const bin = (name) => join(root, 'wasm', 'node_modules', '.bin', name);

function native() {
  const out = execFileSync('cargo', ['run', '--quiet', '--release', '-p', 'spkey-store', '--example', 'create_throughput', '--', String(n)], { cwd: root, encoding: 'utf8' });
  return JSON.parse(out).perSecond;
}

// Every runtime's rounds are rounds.cjs's (a fresh process; its first two
// rounds: cold, then warm), so the loop that times them is written once.
function rounds(command, args = [], env = {}) {
  const out = execFileSync(command, [...args, join(here, 'rounds.cjs'), String(n)], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', ...env },
  });
  const [cold, warm] = out.trim().split(' / ').map(Number);
  return { cold, warm };
}

// The browsers' small .wasm under Node, for comparison: the Node glue made
// for it (each build has its own: wasm-bindgen's names carry the build's
// hashes), with the package's optimized file in place of the raw one.
function smallBuildGlue() {
  const dir = mkdtempSync(join(tmpdir(), 'spkey-small-'));
  const raw = join(root, 'target', 'wasm32-unknown-unknown', 'wasm-release', 'spkey_store_wasm.wasm');
  execFileSync('wasm-bindgen', ['--target', 'nodejs', '--out-dir', dir, '--out-name', 'spkey_store', raw]);
  copyFileSync(join(root, 'wasm', 'pkg', 'web', 'spkey_store_bg.wasm'), join(dir, 'spkey_store_bg.wasm'));
  return dir;
}

/** Compiled wasm modules Chromium keeps in the profile's code cache. */
function cachedModules(profile) {
  const dir = join(profile, 'Default', 'Code Cache', 'wasm');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('_0')).length : 0;
}

// A first visit (cold, durable on OPFS, warm), the browser closed, then a
// second visit to the same URL in the same profile: the page's .wasm comes
// from the HTTP cache (revalidated: 304), with V8's compiled code if
// Chromium kept it.
async function chromium() {
  const server = await serve();
  const profile = await profileDir();
  try {
    const bench = (page, opfs) => page.evaluate(([n, opfs]) => window.inWorker('bench', { n, opfs }), [n, opfs]);
    let browser = await launch(profile);
    let page = await browser.page(server.url);
    const cold = await bench(page, false);
    const opfs = await bench(page, true);
    const warm = await bench(page, false);
    await browser.close();
    const cached = cachedModules(profile);
    browser = await launch(profile);
    page = await browser.page(server.url);
    const second = await bench(page, false);
    const version = browser.browser.version();
    await browser.close();
    return { opfs, cold, warm, second, cached, version };
  } finally {
    server.close();
    // Chromium's helper processes may still be writing as the browser exits.
    await rm(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
  }
}

const baseline = native();
const inNode = rounds(process.execPath);
const glue = smallBuildGlue();
const small = rounds(process.execPath, [], { SPKEY_GLUE: join(glue, 'spkey_store.js') });
rmSync(glue, { recursive: true, force: true });
const deno = rounds(bin('deno'), ['run', '--allow-read', '--allow-env']);
const bun = rounds(bin('bun'));
const browser = await chromium();
// Each runtime's cold and warm rounds are two rows.
const rounded = [
  ['Node, the fast .wasm (its entry\'s)', inNode],
  ['Node, the small .wasm (browsers\')', small],
  ['Deno, the fast .wasm', deno],
  ['Bun, the fast .wasm', bun],
];
const rows = [
  ['native Rust, in memory', baseline],
  ...rounded.flatMap(([name, { cold, warm }]) => [[`${name}, cold`, cold], [`${name}, warm`, warm]]),
  ['Chromium worker, the small .wasm, first visit, cold', browser.cold],
  ['Chromium worker, first visit, warm (after the OPFS run)', browser.warm],
  ['Chromium worker, first visit, OPFS, every command durable', browser.opfs],
  ['Chromium worker, second visit (same profile), cold', browser.second],
];
const versionOf = (command) => execFileSync(command, ['--version'], { encoding: 'utf8' }).match(/\d+\.\d+\.\d+/)[0];

const ratio = (rate) => rate / baseline;
const verdict = (met) => (met ? 'met' : 'missed');
const lines = [
  `createUser throughput, ${n.toLocaleString('en-US')} new users each round`,
  '',
  '| runtime | createUser/s | ratio to native |',
  '|---|---|---|',
  ...rows.map(([name, rate]) => `| ${name} | ${Math.round(rate)} | ${ratio(rate).toFixed(2)}× |`),
  '',
  `- Node with the fast .wasm, warm ≥ 0.7× native: ${ratio(inNode.warm).toFixed(2)}× (${verdict(ratio(inNode.warm) >= 0.7)}); cold ≥ 0.5×: ${ratio(inNode.cold).toFixed(2)}× (${verdict(ratio(inNode.cold) >= 0.5)})`,
  `- the fast .wasm against the small one in Node: ${(inNode.cold / small.cold).toFixed(2)}× cold, ${(inNode.warm / small.warm).toFixed(2)}× warm`,
  `- Chromium's second visit, cold: ${ratio(browser.second).toFixed(2)}× native (the first visit's: ${ratio(browser.cold).toFixed(2)}×); compiled modules in the profile's wasm code cache after the first visit: ${browser.cached}`,
  '',
  `Node ${process.versions.node}, Deno ${versionOf(bin('deno'))}, Bun ${versionOf(bin('bun'))}, Chromium ${browser.version}. Each runtime's rounds by \`wasm/bench/rounds.cjs\` in a fresh process; native by \`examples/create_throughput.rs\`; \`node wasm/bench/throughput.mjs ${n}\`.`,
];
console.log(lines.join('\n'));
if (n >= 5000) writeFileSync(join(here, 'results', 'throughput.md'), `${lines.join('\n')}\n`);
