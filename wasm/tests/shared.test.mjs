// EventStore.openShared in real Chromium tabs (playwright-core over
// Debian's chromium): three tabs on one profile share one OPFS store and
// each sees every change; the holding tab is closed, then the next one is
// crashed (its renderer killed) mid-write, and nothing acknowledged is
// lost; a reload keeps everything.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { serve, launch, profileDir, user } from './support.mjs';

let server;
before(async () => { server = await serve(); });
after(() => server.close());

async function tab(browser, name) {
  const page = await browser.context.newPage();
  await page.goto(`${server.url}/page/shared.html`);
  await page.waitForFunction(() => window.ready === true);
  await within(30, page.evaluate((name) => window.openShared(name), name), 'openShared');
  return page;
}

/** `page.evaluate`, failing after `seconds` instead of hanging on a call
 *  the store never answers. */
function within(seconds, promise, what) {
  return Promise.race([promise, sleep(seconds * 1000).then(() => assert.fail(`no answer within ${seconds} s: ${what}`))]);
}

async function until(what, check, seconds = 20) {
  const deadline = Date.now() + seconds * 1000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting: ${what}`);
    await sleep(50);
  }
}

test('three tabs share one store, and each sees every change through subscribe', { timeout: 120_000 }, async () => {
  const browser = await launch(await profileDir());
  try {
    const tabs = [];
    for (let i = 0; i < 3; i++) tabs.push(await tab(browser, 'tabs.redb'));
    const answers = await within(30, Promise.all(
      tabs.map((t, i) => t.evaluate((users) => window.createMany(users), [0, 1, 2, 3, 4].map((k) => user(100 + 10 * i + k)))),
    ), 'the creates');
    assert.ok(answers.flat().every((a) => a.success === true));
    for (const t of tabs) {
      await until('every tab sees 15 events', () => t.evaluate(() => window.seen.length >= 15));
      const seen = await t.evaluate(() => window.seen);
      assert.deepEqual(seen, Array.from({ length: 15 }, (_, i) => i + 1), 'every position once, in order');
    }
    const iterated = await within(30, tabs[0].evaluate(async () => {
      const changes = window.store.changes(13);
      const positions = [(await changes.next()).value.position, (await changes.next()).value.position];
      await changes.return();
      return positions;
    }), 'changes');
    assert.deepEqual(iterated, [14, 15], 'changes() iterates the same feed');
    const holders = await Promise.all(tabs.map((t) => t.evaluate(() => window.isHolder())));
    assert.equal(holders.filter(Boolean).length, 1, 'exactly one tab holds the store');
  } finally {
    await browser.kill();
  }
});

test('the holder tab closed, then the next one crashed mid-write: another takes over and nothing acknowledged is lost', { timeout: 120_000 }, async () => {
  const browser = await launch(await profileDir());
  try {
    let tabs = [];
    for (let i = 0; i < 3; i++) tabs.push(await tab(browser, 'failover.redb'));
    const holderOf = async () => {
      for (const t of tabs) if (await t.evaluate(() => window.isHolder())) return t;
      return null;
    };
    const acked = new Set();
    const collect = async (t) => (await t.evaluate(() => window.acked)).forEach((id) => acked.add(id));

    // Every tab writes; the holder's tab is closed under the writes.
    await Promise.all(tabs.map((t, i) => t.evaluate((p) => window.startWriting(p), `800${i}`)));
    await sleep(500);
    const first = await holderOf();
    await collect(first);
    await first.close();
    tabs = tabs.filter((t) => t !== first);
    const progress = async () => (await Promise.all(tabs.map((t) => t.evaluate(() => window.acked.length)))).reduce((a, b) => a + b, 0);
    let before = await progress();
    await until('writes go on after the holder closed', async () => (await progress()) > before + 5);
    let second = null;
    await until('a new holder', async () => (second = await holderOf()) !== null);

    // Now its renderer is killed, mid-write: what it saw acknowledged first.
    await collect(second);
    const cdp = await second.context().newCDPSession(second);
    cdp.send('Page.crash').catch(() => {});
    tabs = tabs.filter((t) => t !== second);
    const [survivor] = tabs;
    before = await survivor.evaluate(() => window.acked.length);
    await until('writes go on after the holder crashed', async () => (await survivor.evaluate(() => window.acked.length)) > before + 5);
    await survivor.evaluate(() => window.stopWriting());
    await collect(survivor);
    assert.ok(acked.size > 20, `enough writes to mean something (${acked.size})`);

    const missing = await within(30, survivor.evaluate((ids) => window.missing(ids), [...acked]), 'reading back');
    assert.deepEqual(missing, [], 'every acknowledged user is in the store');
    await survivor.reload();
    await survivor.waitForFunction(() => window.ready === true);
    await survivor.evaluate(() => window.openShared('failover.redb'));
    assert.deepEqual(await survivor.evaluate((ids) => window.missing(ids), [...acked]), [], 'and after a reload');
    await survivor.evaluate(() => window.store.verify());
  } finally {
    await browser.kill();
  }
});
