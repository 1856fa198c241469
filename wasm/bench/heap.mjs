// The wasm heap of a browser tab's store: N users created in an OPFS store
// in a Chromium dedicated Worker, one durable command at a time; prints the
// linear memory before and after (wasm memory only grows, so "after" is
// the peak) and writes wasm/bench/results/heap.md.
//
//   node wasm/bench/heap.mjs [N]        (after bash wasm/build.sh; N = 100000)
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, launch, profileDir } from '../tests/support.mjs';

const n = Number(process.argv[2] ?? 100_000);
const here = dirname(fileURLToPath(import.meta.url));
const server = await serve({ '/pkg/': join(here, '..', 'pkg'), '/heap/': join(here, 'heap') });
const browser = await launch(await profileDir());
try {
  const page = await browser.context.newPage();
  await page.goto(`${server.url}/heap/index.html`);
  await page.waitForFunction(() => window.ready === true);
  const r = await page.evaluate((n) => window.measure(n), n);
  const mib = (bytes) => (bytes / 1048576).toFixed(1);
  const table = [
    '| users in the OPFS store | wasm heap after opening | wasm heap after the last create | creates/s (each durable) |',
    '|---|---|---|---|',
    `| ${r.head.toLocaleString('en-US')} | ${mib(r.before)} MiB | ${mib(r.after)} MiB | ${(n / r.seconds).toFixed(0)} |`,
    '',
    'Chromium dedicated Worker; `node wasm/bench/heap.mjs`.',
    '',
  ].join('\n');
  process.stdout.write(table);
  if (n >= 100_000) writeFileSync(join(here, 'results', 'heap.md'), table);
} finally {
  await browser.kill();
  server.close();
}
