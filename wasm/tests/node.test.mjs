// The package's Node entry (pkg/node), as an app would use it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { holds } from './audit.mjs';

const require = createRequire(import.meta.url);
const { EventStore } = require('../pkg/node/index.js');

const id = '550e8400-e29b-41d4-a716-446655440000';
const body = { userId: id, email: 'user@example.com', firstName: 'John Doe', phoneNumber: '+1-555-0123' };

test('createUser answers with the seed bodies, 4xx returned not thrown', () => {
  const store = EventStore.inMemory();
  const created = store.createUserWithStatus(id, body);
  const replay = store.createUserWithStatus(id, JSON.stringify(body));
  const invalid = store.createUser('nope', { ...body, email: 'x', extra: 1 });

  assert.equal(created.status, 201);
  assert.equal(created.body.event.position, 1);
  assert.equal(typeof created.body.version, 'number');
  assert.equal(replay.status, 200);
  assert.deepEqual(replay.body, created.body);
  assert.equal(invalid.code, 400);
  assert.deepEqual(invalid.details.map((d) => d.field), ['id', 'email', 'extra']);
  assert.equal(store.headPosition(), 1);
});

test('updateUser changes a user, frees the old email, and answers 200, 404 and 409 as the API does', () => {
  const store = EventStore.inMemory();
  const other = '6fa459ea-ee8a-3ca4-894e-db77e160355e';
  store.createUser(id, body);
  const seen = [];
  const unsubscribe = store.subscribe(0, (event) => seen.push(event.eventType));
  const updated = store.updateUser(id, { email: 'new@example.com', phoneNumber: null });
  const replay = store.updateUser(id, JSON.stringify({ email: 'new@example.com', phoneNumber: null }));
  const missing = store.updateUser(other, { firstName: 'X' });
  store.createUser(other, { userId: other, email: 'USER@example.com' });
  const taken = store.updateUser(other, { email: 'NEW@example.com' });

  assert.equal(updated.success, true);
  assert.equal(updated.version, 2);
  assert.equal(updated.event.eventType, 'UserUpdated');
  assert.deepEqual(updated.event.data, { userId: id, email: 'new@example.com', phoneNumber: null });
  assert.deepEqual(replay, updated);
  assert.equal(missing.code, 404);
  assert.equal(taken.code, 409);
  assert.deepEqual(taken.details.map((d) => d.field), ['email']);
  const user = store.user(id);
  assert.equal(user.email, 'new@example.com');
  assert.equal(user.phoneNumber, undefined);
  assert.equal(user.version, 2);
  store.verify();
  return Promise.resolve().then(() => {
    unsubscribe();
    assert.deepEqual(seen, ['UserCreated', 'UserUpdated', 'UserCreated']);
  });
});

test('deleteUser erases a user: 200, the same body again, 404, its id kept and its email free', () => {
  const store = EventStore.inMemory();
  const other = '6fa459ea-ee8a-3ca4-894e-db77e160355e';
  store.createUser(id, body);
  const erased = store.deleteUser(id);
  const replay = store.deleteUser(id, { userId: id });
  const missing = store.deleteUser(other);
  const extra = store.deleteUser(id, { email: 'x@y.co' });
  const again = store.createUser(id, body);
  const reused = store.createUser(other, { userId: other, email: body.email });

  assert.equal(erased.success, true);
  assert.equal(erased.event.eventType, 'UserErased');
  assert.deepEqual(erased.event.data, { userId: id });
  assert.deepEqual(replay, erased);
  assert.equal(missing.code, 404);
  assert.deepEqual(extra.details.map((d) => d.field), ['email']);
  assert.equal(again.code, 409);
  assert.deepEqual(again.details.map((d) => d.field), ['userId']);
  assert.equal(reused.success, true);
  const user = store.user(id);
  assert.equal(user.erased, true);
  assert.equal(user.email, '');
  assert.equal(user.firstName, undefined);
  assert.deepEqual(store.events().map((e) => e.eventType), ['Redacted', 'UserErased', 'UserCreated']);
  assert.ok(!JSON.stringify(store.events()).includes(body.firstName));
  store.verify();
});

test('after deleteUser no byte of a snapshot holds the erased user, and the others are all there', () => {
  const store = EventStore.inMemory();
  const people = [
    ['e1a50001-0000-4000-8000-000000000001', 'Xanthippe.Quorrelby@Erasable.example', 'Xanthippe', 'Quorrelby', '+44 20 7946 0311'],
    ['e1a50001-0000-4000-8000-000000000002', 'bartholomew.keeping@example.com', 'Bartholomew', 'Keepington', '+1 555 0100 42'],
  ];
  for (const [userId, email, firstName, lastName, phoneNumber] of people) {
    store.createUser(userId, { userId, email, firstName, lastName: 'placeholder', phoneNumber });
    store.updateUser(userId, { lastName });
  }
  const before = store.snapshot();
  assert.ok(people[0].slice(1).every((value) => holds(before, value)), 'the search finds the user before');

  assert.equal(store.deleteUser(people[0][0]).success, true);

  const after = store.snapshot();
  assert.deepEqual(people[0].slice(1).filter((value) => holds(after, value)), []);
  assert.deepEqual(people[1].slice(1).filter((value) => !holds(after, value)), []);
  const copy = EventStore.fromSnapshot(after);
  assert.equal(copy.user(people[1][0]).lastName, 'Keepington');
  assert.equal(copy.user(people[0][0]).erased, true);
  copy.verify();
});

test('failures are Error objects with a stable name', () => {
  const store = EventStore.inMemory();
  assert.throws(() => store.user('not-a-uuid'), { name: 'InvalidArgumentError' });
  assert.throws(() => store.events(-1), { name: 'InvalidArgumentError' });
  store.close();
  assert.throws(() => store.headPosition(), (e) => e instanceof Error && e.name === 'StoreClosedError');
});

test('a snapshot restores in a new store', () => {
  const store = EventStore.inMemory();
  store.createUser(id, body);
  const copy = EventStore.fromSnapshot(store.snapshot());
  assert.equal(copy.user(id).email, 'user@example.com');
  assert.equal(copy.events().length, 1);
});

test('the email rule runs its Unicode tables in wasm: one mailbox across case, NFC, width and IDN forms', () => {
  const store = EventStore.inMemory();
  const create = (n, email) => {
    const userId = `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
    return store.createUserWithStatus(userId, { userId, email });
  };
  assert.equal(create(1, 'José@Bücher.de').status, 201);
  // Case folding, a decomposed é, punycode, full-width letters (UTS 46 maps them).
  for (const [n, email] of [[2, 'JOSE\u0301@xn--bcher-kva.de'], [3, 'josé@BÜCHER.DE'], [4, 'josé@\uFF42ü\uFF43\uFF48\uFF45\uFF52.de']]) {
    assert.equal(create(n, email).status, 409, email);
  }
  // U+FB01 (the fi ligature) maps to "fi": the same domain as fish.com.
  assert.equal(create(5, 'a@\uFB01sh.com').status, 201);
  assert.equal(create(6, 'a@fish.com').status, 409);
  // A right-to-left letter and a left-to-right one in one label break the bidi rule.
  const bidi = create(7, 'a@\u05D0a.com');
  assert.equal(bidi.status, 400);
  assert.match(bidi.body.details[0].message, /not a valid domain name/);
  assert.equal(store.headPosition(), 2);
});

test('subscribe delivers every event after its position once, in order, then as recorded', async () => {
  const store = EventStore.inMemory();
  const user = (n) => ({ userId: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`, email: `s${n}@example.com` });
  store.createUser(user(1).userId, user(1));
  const seen = [];
  const unsubscribe = store.subscribe(0, (event) => seen.push(event.position));
  store.createUser(user(2).userId, user(2));
  store.createUser(user(2).userId, user(2)); // a replay records nothing
  await Promise.resolve();
  assert.deepEqual(seen, [1, 2]);

  // Events that arrive by sync are delivered too.
  const other = EventStore.inMemory();
  other.createUser(user(3).userId, user(3));
  const hubless = other.push(); // a push batch is not a pull: refused whole, nothing delivered
  assert.throws(() => store.importBatch(hubless), { name: 'BatchRefusedError' });
  unsubscribe();
  store.createUser(user(4).userId, user(4));
  await Promise.resolve();
  assert.deepEqual(seen, [1, 2], 'nothing after unsubscribe');

  const iterator = store.changes(2);
  const first = await iterator.next();
  store.createUser(user(5).userId, user(5));
  const second = await iterator.next();
  await iterator.return();
  assert.deepEqual([first.value.position, second.value.position], [3, 4]);
  assert.equal(first.value.data.email, 's4@example.com');
  assert.throws(() => store.subscribe(-1, () => {}), { name: 'InvalidArgumentError' });
});

test('sync refuses a URL that is not an absolute http(s) URL before any request, and changes nothing', async () => {
  const store = EventStore.inMemory();
  const id = '00000000-0000-4000-8000-000000000009';
  store.createUser(id, { userId: id, email: 'sync-url@example.com' });
  for (const url of ['not a url', 'hub.example.com', 'ftp://hub.example.com', '']) {
    await assert.rejects(store.sync(url, { apiKey: 'k', token: 't' }), (error) => {
      assert.equal(error.name, 'InvalidArgumentError', `${JSON.stringify(url)}: ${error.name} ${error.message}`);
      return true;
    });
  }
  assert.equal(store.pending().length, 1);
  assert.equal(store.pullCursor(), 0);
});

test('sync stopped by its signal throws TimeoutError or AbortError, names SpkeyErrorName lists', async () => {
  // A hub that accepts the connection and never answers.
  const sockets = new Set();
  const server = createServer(() => {});
  server.on('connection', (socket) => sockets.add(socket));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  try {
    const store = EventStore.inMemory();
    await assert.rejects(store.sync(url, { apiKey: 'k', token: 't', signal: AbortSignal.timeout(100) }), {
      name: 'TimeoutError',
    });
    const controller = new AbortController();
    const syncing = store.sync(url, { apiKey: 'k', token: 't', signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(syncing, { name: 'AbortError' });
  } finally {
    for (const socket of sockets) socket.destroy();
    server.close();
  }
});
