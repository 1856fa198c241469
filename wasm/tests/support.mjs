// Shared by the page tests and the benchmark: a static server on loopback
// and a headless Chromium that can be killed and restarted on one profile.
import { spawn } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const defaultRoots = { '/pkg/': join(here, '..', 'pkg'), '/page/': join(here, 'page') };
const types = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
};

/** Serves wasm/pkg at /pkg/ and tests/page at /page/ on 127.0.0.1, or
 *  the directories of `roots` (URL prefix → directory). */
export async function serve(roots = defaultRoots) {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const prefix = Object.keys(roots).find((p) => path.startsWith(p));
    const file = prefix && normalize(join(roots[prefix], path.slice(prefix.length)));
    if (!file || !file.startsWith(roots[prefix]) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    // Revalidated on every load (the tests rebuild the package) and
    // answered 304 when unchanged, as the package README asks of a server:
    // a browser keeps the .wasm, and may keep its compiled code, between
    // visits (wasm/bench/throughput.mjs measures a second visit).
    const body = await readFile(file);
    const etag = `"${createHash('sha256').update(body).digest('base64url')}"`;
    const headers = { 'content-type': types[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-cache', etag };
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, headers).end();
      return;
    }
    res.writeHead(200, headers);
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export async function profileDir() {
  return mkdtemp(join(tmpdir(), 'spkey-chromium-'));
}

/**
 * Starts headless Chromium on `profile` and connects to it. We start the
 * process ourselves (not through Playwright's launcher) so that a test can
 * SIGKILL it, as a crash or a killed tab would.
 */
export async function launch(profile) {
  const portFile = join(profile, 'DevToolsActivePort');
  // A killed browser leaves its old port behind; wait for the new one.
  await rm(portFile, { force: true });
  const child = spawn(CHROMIUM, [
    '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--user-data-dir=${profile}`, '--remote-debugging-port=0', 'about:blank',
  ], { stdio: 'ignore' });
  for (let i = 0; i < 200 && !existsSync(portFile); i++) await sleep(50);
  let port;
  for (let i = 0; i < 100 && !port; i++) {
    port = readFileSync(portFile, 'utf8').split('\n')[0];
    if (!port) await sleep(50);
  }
  const browser = await chromium.connectOverCDP(`http://127.0.0.1:${port}`);
  const context = browser.contexts()[0];
  return {
    browser,
    context,
    /** A page of the test site, loaded and ready. */
    async page(url) {
      const page = await context.newPage();
      await page.goto(`${url}/page/index.html`);
      await page.waitForFunction(() => window.ready === true);
      return page;
    },
    /** Ends the browser the hard way: no shutdown, no flush. */
    async kill() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
    /** Ends the browser the polite way. */
    async close() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      await browser.close();
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export function user(n) {
  const hex = n.toString(16).padStart(12, '0');
  return {
    userId: `00000000-0000-4000-8000-${hex}`,
    email: `page${n}@example.com`,
    firstName: 'Page',
    phoneNumber: '+1-555-0123',
  };
}

// A spkey-hub for the browser tests: the debug binary on a fresh data
// directory, one organization, on another origin than the page (CORS).

const hubBinary = join(here, '..', '..', 'target', 'debug', 'spkey-hub');
export const API_KEY = 'page-test-api-key';
const SECRET = 'page-test-hs256-secret-page-test-hs256';

/** An HS256 JWT, signed here as an auth server would. */
export function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${unsigned}.${createHmac('sha256', SECRET).update(unsigned).digest('base64url')}`;
}

/** Starts the hub, accepting requests from pages of `origin`; resolves
 *  with its URL and a `stop`. */
export async function startHub(origin) {
  const dir = mkdtempSync(join(tmpdir(), 'spkey-page-hub-'));
  writeFileSync(join(dir, 'hub.toml'), [
    'listen = "127.0.0.1:0"',
    'data_dir = "data"',
    '[[organizations]]',
    'id = "web"',
    `api_key_sha256 = ["${createHash('sha256').update(API_KEY).digest('hex')}"]`,
    `jwt_secret = "${SECRET}"`,
    `cors_origins = ["${origin}"]`,
  ].join('\n'));
  const child = spawn(hubBinary, ['--config', join(dir, 'hub.toml')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`spkey-hub exited ${code}`)));
  });
  return { url: line.replace('listening on ', ''), stop: () => child.kill('SIGTERM') };
}
