// The package's Node entry (pkg/node), as an app would use it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

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
