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

// A spkey-hub started here, on another origin than the page (CORS); a
// Worker store on OPFS creates users offline and syncs with it; a second
// browser profile syncs and finds them.
import { API_KEY, jwt, startHub } from './support.mjs';

test('a Worker store on OPFS syncs with a hub on another origin and a second profile pulls it', async () => {
  const hub = await startHub(server.url);
  const now = Math.floor(Date.now() / 1000);
  const token = jwt({ scope: 'spkey:service', exp: now + 3600 });
  // A user's tokens: the first has expired, so the function is asked again.
  const userTokens = [jwt({ sub: ids[1], exp: now - 600 }), jwt({ sub: ids[1], exp: now + 3600 })];
  try {
    const first = await launch(await profileDir());
    const page = await first.page(server.url);
    const created = await page.evaluate((users) => window.inWorker('create', { name: 'sync.redb', users }), users.slice(0, 3));
    assert.ok(created.every((a) => a.success === true));
    const pushed = await page.evaluate((args) => window.inWorker('sync', args), { name: 'sync.redb', url: hub.url, apiKey: API_KEY, token });
    await first.close();

    const second = await launch(await profileDir());
    const other = await second.page(server.url);
    const pulled = await other.evaluate((args) => window.inWorker('sync', args), { name: 'other.redb', url: hub.url, apiKey: API_KEY, token });
    const found = await other.evaluate((ids) => window.inWorker('read', { name: 'other.redb', ids }), ids.slice(0, 3));
    const refused = await other
      .evaluate((args) => window.inWorker('sync', args), { name: 'other.redb', url: hub.url, apiKey: 'wrong', token })
      .then(() => null, (e) => e.message);
    // A phone of user 2: its token pulls that user and no one else.
    const phone = await other.evaluate((args) => window.inWorker('sync', args), { name: 'phone.redb', url: hub.url, apiKey: API_KEY, tokens: userTokens });
    const seen = await other.evaluate((ids) => window.inWorker('read', { name: 'phone.redb', ids }), ids.slice(0, 3));
    await second.close();

    assert.deepEqual(phone, { pushed: 0, accepted: 0, rejected: 0, pulled: 1, cursor: 3, asked: 3 });
    assert.deepEqual(seen.users.map((u) => u?.email ?? null), [null, users[1].email, null]);
    assert.deepEqual(pushed, { pushed: 3, accepted: 3, rejected: 0, pulled: 0, cursor: 3 });
    assert.deepEqual(pulled, { pushed: 0, accepted: 0, rejected: 0, pulled: 3, cursor: 3 });
    assert.deepEqual(found.users.map((u) => u.email), users.slice(0, 3).map((u) => u.email));
    assert.match(refused ?? 'accepted', /HubRefusedError: the hub answered 403/);
  } finally {
    hub.stop();
  }
});
