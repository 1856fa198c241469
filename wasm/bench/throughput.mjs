// createUser throughput, one script, three runtimes: native Rust (in
// memory), the npm package in Node (in memory), and the npm package in
// headless Chromium (a dedicated Worker, in memory, and on OPFS with every
// command durable). Same requests everywhere; prints a table with each
// figure's ratio to native. A JS engine compiles wasm in tiers while it
// runs, so each in-memory figure is given cold (a fresh process or worker's
// first N commands) and warm (N more on a fresh store, same process).
//
//   node wasm/bench/throughput.mjs [N]        (after bash wasm/build.sh)
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, launch, profileDir } from '../tests/support.mjs';

const n = Number(process.argv[2] ?? 5000);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function native() {
  const out = execFileSync('cargo', ['run', '--quiet', '--release', '--example', 'create_throughput', '--', String(n)], { cwd: root, encoding: 'utf8' });
  return JSON.parse(out).perSecond;
}

// Node's rounds are rounds.cjs's (a fresh process; its first two rounds:
// cold, then warm), so the loop that times them is written once.
function node() {
  const out = execFileSync(process.execPath, [join(root, 'wasm', 'bench', 'rounds.cjs'), String(n)], { encoding: 'utf8' });
  const [cold, warm] = out.trim().split(' / ').map(Number);
  return { cold, warm };
}

async function chromium() {
  const server = await serve();
  const browser = await launch(await profileDir());
  try {
    const page = await browser.page(server.url);
    const cold = await page.evaluate((n) => window.inWorker('bench', { n, opfs: false }), n);
    const opfs = await page.evaluate((n) => window.inWorker('bench', { n, opfs: true }), n);
    const warm = await page.evaluate((n) => window.inWorker('bench', { n, opfs: false }), n);
    return { opfs, cold, warm };
  } finally {
    await browser.close();
    server.close();
  }
}

const baseline = native();
const inNode = node();
const rows = [
  ['native Rust, in memory', baseline],
  ['Node (wasm), in memory, cold', inNode.cold],
  ['Node (wasm), in memory, warm', inNode.warm],
];
const browser = await chromium();
rows.push(['Chromium worker (wasm), in memory, cold', browser.cold]);
rows.push(['Chromium worker (wasm), in memory, warm (after the OPFS run)', browser.warm]);
rows.push(['Chromium worker (wasm), OPFS, durable', browser.opfs]);

console.log(`createUser throughput, ${n} new users each\n`);
console.log('| runtime | createUser/s | ratio to native |');
console.log('|---|---|---|');
for (const [name, rate] of rows) {
  console.log(`| ${name} | ${Math.round(rate).toLocaleString('en-US')} | ${(rate / baseline).toFixed(2)}× |`);
}
