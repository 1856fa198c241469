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
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, launch, profileDir } from '../tests/support.mjs';

const n = Number(process.argv[2] ?? 5000);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function requests(count) {
  return Array.from({ length: count }, (_, i) => {
    const id = `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
    return [id, JSON.stringify({ userId: id, email: `bench${i}@example.com`, firstName: 'Bench', phoneNumber: '+1-555-0123' })];
  });
}

function native() {
  const out = execFileSync('cargo', ['run', '--quiet', '--release', '--example', 'create_throughput', '--', String(n)], { cwd: root, encoding: 'utf8' });
  return JSON.parse(out).perSecond;
}

function node() {
  const { EventStore } = createRequire(import.meta.url)('../pkg/node/spkey_store.js');
  const round = () => {
    const store = EventStore.inMemory();
    const work = requests(n);
    const start = performance.now();
    for (const [id, body] of work) {
      if (store.createUser(id, body).success !== true) throw new Error('not created');
    }
    return n / ((performance.now() - start) / 1000);
  };
  return { cold: round(), warm: round() };
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
