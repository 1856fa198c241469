// Page tests: the built package (wasm/pkg, web entry) served from loopback
// to real headless Chromium, driven by playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { serve, launch, profileDir, user } from './support.mjs';

let server;
before(async () => { server = await serve(); });
after(() => server.close());

const users = [1, 2, 3, 4, 5].map(user);
const ids = users.map((u) => u.userId);

test('OPFS users survive the browser being killed and restarted', async () => {
  const profile = await profileDir();
  const first = await launch(profile);
  const page = await first.page(server.url);
  const answers = await page.evaluate((users) => window.inWorker('create', { name: 'users.redb', users }), users);
  assert.deepEqual(answers.map((a) => a.success), [true, true, true, true, true]);
  assert.deepEqual(answers.map((a) => a.event.position), [1, 2, 3, 4, 5]);
  await first.kill(); // the store was never closed

  const second = await launch(profile);
  const again = await second.page(server.url);
  const found = await again.evaluate((ids) => window.inWorker('read', { name: 'users.redb', ids }), ids);
  await second.close();

  assert.equal(found.head, 5);
  assert.deepEqual(found.users.map((u) => u.email), users.map((u) => u.email));
});

test('a snapshot kept in IndexedDB restores after a restart', async () => {
  const profile = await profileDir();
  const first = await launch(profile);
  const page = await first.page(server.url);
  const answers = await page.evaluate((users) => window.saveSnapshot(users), users);
  assert.ok(answers.every((a) => a.success === true));
  await first.close();

  const second = await launch(profile);
  const again = await second.page(server.url);
  const restored = await again.evaluate((ids) => window.restoreSnapshot(ids), ids);
  await second.close();

  assert.equal(restored.head, 5);
  assert.deepEqual(restored.users.map((u) => u.userId), ids);
});

test('a second tab cannot open the OPFS store another tab holds', async () => {
  const profile = await profileDir();
  const browser = await launch(profile);
  const one = await browser.page(server.url);
  await one.evaluate((users) => window.inWorker('create', { name: 'shared.redb', users }), users.slice(0, 1));
  const two = await browser.page(server.url);
  const error = await two
    .evaluate(() => window.inWorker('read', { name: 'shared.redb', ids: [] }))
    .then(() => null, (e) => e.message);
  await browser.close();

  assert.match(error ?? 'opened twice', /StoreLockedError: store 'shared.redb' is open elsewhere/);
});
