// The first hour, timed: a cold first createUser in a Chromium dedicated
// Worker on OPFS — the README's page and worker, built by Vite with no
// config from the packed package, served on 127.0.0.1, each run in a fresh
// browser profile (cold OPFS, cold caches). Prints the median of the runs
// and writes wasm/bench/results/first-create.md, which the README quotes.
//
//   node wasm/bench/first-create.mjs [runs]     (after bash wasm/build.sh)
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, launch, profileDir } from '../tests/support.mjs';

const runs = Number(process.argv[2] ?? 7);
const here = dirname(fileURLToPath(import.meta.url));
const wasmDir = join(here, '..');
const root = mkdtempSync(join(tmpdir(), 'spkey-first-'));
try {
  const [packed] = JSON.parse(
    execFileSync('npm', ['pack', join(wasmDir, 'pkg'), '--json', '--pack-destination', root], { encoding: 'utf8' }),
  );
  cpSync(join(here, 'first-create'), join(root, 'app'), { recursive: true });
  writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'first', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-save', join(root, packed.filename)], { cwd: root, stdio: 'ignore' });
  execFileSync(join(wasmDir, 'node_modules', '.bin', 'vite'), ['build', '--logLevel', 'warn'], { cwd: join(root, 'app') });
  const server = await serve({ '/': join(root, 'app', 'dist') });
  const samples = [];
  for (let i = 0; i < runs; i++) {
    const browser = await launch(await profileDir());
    const page = await browser.context.newPage();
    await page.goto(`${server.url}/index.html`);
    await page.waitForFunction(() => window.timings, null, { timeout: 30_000 });
    const timings = await page.evaluate(() => window.timings);
    await browser.close();
    if (!timings.success) throw new Error('the first createUser was refused');
    samples.push(timings);
  }
  server.close();
  const median = (key) => {
    const sorted = samples.map((s) => s[key]).sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  };
  const table = [
    '| from navigation to the first answer | worker script starts | `init()` | `openOpfs()` | first `createUser` |',
    '|---|---|---|---|---|',
    `| ${median('firstAnswer').toFixed(0)} ms | ${median('workerStart').toFixed(0)} ms | ${median('init').toFixed(0)} ms | ${median('openOpfs').toFixed(0)} ms | ${median('createUser').toFixed(1)} ms |`,
    '',
    `Median of ${runs} runs, each in a fresh Chromium profile; \`node wasm/bench/first-create.mjs\`.`,
    '',
  ].join('\n');
  process.stdout.write(table);
  writeFileSync(join(here, 'results', 'first-create.md'), table);
} finally {
  rmSync(root, { recursive: true, force: true });
}
