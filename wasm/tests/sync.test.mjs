// Convergence with a WASM device: two devices built to wasm (the npm
// package under Node) and one native device sync with a native hub (the
// spkey CLI on store files), in random orders and interleavings. At the
// end every device agrees with the hub on every user, and every command a
// WASM device created is either on the hub or visible there as a rejection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { holds } from './audit.mjs';

const { EventStore } = createRequire(import.meta.url)('../pkg/node/index.js');
const cli = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'target', 'debug', 'spkey');

const ids = [1, 2, 3, 4].map((n) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`);
const emails = ['p@example.com', 'q@example.com', 'P@example.com'];
const names = ['Ann', 'Bob'];

/** Runs the native CLI; returns stdout as bytes. */
function spkey(db, args, input) {
  const run = spawnSync(cli, ['--db', db, ...args], { input, maxBuffer: 1 << 26 });
  if (run.status === 2) throw new Error(`spkey ${args[0]}: ${run.stderr}`);
  return { status: run.status, stdout: run.stdout };
}

/** A WASM device: the npm package's store, synced through byte arrays. */
function wasmDevice() {
  const store = EventStore.inMemory();
  return {
    store,
    create(id, body) { return store.createUser(id, body); },
    push() { return store.push(); },
    applyReply(reply) { store.applyReply(reply); },
    cursor() { return store.pullCursor(); },
    import(batch) { store.importBatch(batch); },
    user(id) { return store.user(id); },
  };
}

/** A native device: a store file driven through the CLI. */
function nativeDevice(dir, name) {
  const db = join(dir, `${name}.redb`);
  return {
    create(id, body) { return JSON.parse(spkey(db, ['create-user', id, JSON.stringify(body)]).stdout); },
    push() { return spkey(db, ['push']).stdout; },
    applyReply(reply) { spkey(db, ['apply-reply', '-'], reply); },
    cursor() { return Number(spkey(db, ['cursor']).stdout.toString()); },
    import(batch) { spkey(db, ['import', '-'], batch); },
    user(id) {
      const run = spkey(db, ['user', id]);
      return run.status === 0 ? JSON.parse(run.stdout) : null;
    },
  };
}

function hubOf(dir) {
  const db = join(dir, 'hub.redb');
  return {
    accept(batch) { return spkey(db, ['accept', '-'], batch).stdout; },
    export(since) { return spkey(db, ['export', '--since', String(since)]).stdout; },
    user(id) {
      const run = spkey(db, ['user', id]);
      return run.status === 0 ? JSON.parse(run.stdout) : null;
    },
    eventIds() {
      return spkey(db, ['events']).stdout.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l).eventId);
    },
  };
}

function sync(device, hub) {
  device.applyReply(hub.accept(device.push()));
  device.import(hub.export(device.cursor()));
}

/** A small seeded generator, so a failing seed can be replayed. */
function rng(seed) {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x % n;
  };
}

const profile = (u) => u && !u.rejection ? { userId: u.userId, email: u.email, firstName: u.firstName } : null;

for (const seed of [1, 2, 3, 4, 5, 6]) {
  test(`seed ${seed}: devices and the hub converge`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'spkey-sync-'));
    const hub = hubOf(dir);
    const devices = [wasmDevice(), wasmDevice(), nativeDevice(dir, 'native')];
    const created = devices.map(() => []);
    const pick = rng(seed);
    for (let step = 0; step < 24; step++) {
      const d = pick(devices.length);
      const device = devices[d];
      switch (pick(5)) {
        case 0: case 1: {
          const id = ids[pick(ids.length)];
          const answer = device.create(id, { userId: id, email: emails[pick(emails.length)], firstName: names[pick(names.length)] });
          if (answer.success && answer.event && answer.event.version >= 1 && !created[d].includes(answer.event.eventId)) {
            created[d].push(answer.event.eventId);
          }
          break;
        }
        case 2: sync(device, hub); break;
        case 3: hub.accept(device.push()); break; // the reply is lost
        default: device.import(hub.export(device.cursor()));
      }
    }
    for (let round = 0; round < 2; round++) devices.forEach((device) => sync(device, hub));

    for (const id of ids) {
      const expected = profile(hub.user(id));
      devices.forEach((device, d) => {
        assert.deepEqual(profile(device.user(id)), expected, `device ${d}, user ${id}`);
      });
    }
    const onHub = new Set(hub.eventIds());
    assert.equal(onHub.size, hub.eventIds().length, 'an event accepted twice');
    devices.slice(0, 2).forEach((device, d) => {
      assert.deepEqual(device.store.pending(), []);
      const rejected = new Set(device.store.rejections().map((e) => e.data.rejectedEventId));
      for (const eventId of created[d]) {
        assert.ok(onHub.has(eventId) !== rejected.has(eventId), `event ${eventId} of wasm device ${d}`);
      }
      device.store.verify();
    });
  });
}

test('an erasure reaches a WASM device that was offline, its pending edit of the user included: no byte of any store holds them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spkey-erase-'));
  const hub = hubOf(dir);
  const [phone, laptop] = [wasmDevice(), wasmDevice()];
  const id = ids[0];
  const erased = ['Xanthippe.Quorrelby@Erasable.example', 'Xanthippe', 'Quorrelby', '+44 20 7946 0311', 'Offline-Edit-Surname'];
  const kept = ['bartholomew.keeping@example.com', 'Bartholomew'];
  phone.create(id, { userId: id, email: erased[0], firstName: erased[1], lastName: erased[2], phoneNumber: erased[3] });
  phone.create(ids[1], { userId: ids[1], email: kept[0], firstName: kept[1] });
  sync(phone, hub);
  sync(laptop, hub);
  assert.equal(laptop.user(id).firstName, 'Xanthippe');
  // The laptop goes offline with an edit of the user not yet pushed.
  laptop.store.updateUser(id, { lastName: erased[4] });

  assert.equal(phone.store.deleteUser(id).success, true);
  sync(phone, hub);
  sync(laptop, hub);

  const files = {
    phone: phone.store.snapshot(),
    laptop: laptop.store.snapshot(),
    hub: readFileSync(join(dir, 'hub.redb')),
  };
  for (const [name, bytes] of Object.entries(files)) {
    assert.deepEqual(erased.filter((value) => holds(bytes, value)), [], `${name} holds the erased user`);
    assert.deepEqual(kept.filter((value) => !holds(bytes, value)), [], `${name} lost the kept user`);
  }
  assert.equal(laptop.user(id).erased, true);
  assert.deepEqual(laptop.store.pending(), []);
  laptop.store.verify();
});

test('a damaged batch is refused with a BatchRefusedError and changes nothing', () => {
  const device = wasmDevice();
  device.create(ids[0], { userId: ids[0], email: 'a@example.com' });
  const dir = mkdtempSync(join(tmpdir(), 'spkey-sync-'));
  const hub = hubOf(dir);
  const reply = hub.accept(device.push());
  const damaged = Uint8Array.from(reply);
  damaged[12] ^= 1;
  assert.throws(() => device.store.applyReply(damaged), { name: 'BatchRefusedError' });
  assert.equal(device.store.pending().length, 1);
  device.store.applyReply(reply);
  assert.equal(device.store.pending().length, 0);
  execFileSync(cli, ['--db', join(dir, 'hub.redb'), 'verify']);
});
