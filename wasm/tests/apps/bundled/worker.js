// Every method the package's types declare must survive the bundler (the
// test writes methods.js from the .d.ts files) and work once called: a
// create seen by subscribe() and by changes(), synced with the test's hub,
// then each other method (openShared: the two-tab tests).
import init, { EventStore } from 'spkey-store';
import { methods, statics } from './methods.js';
import wasm from './wasm.js';

self.onmessage = async ({ data: { id, hub } }) => {
  try {
    await init(wasm === undefined ? undefined : { module_or_path: wasm });
    const missing = [
      ...methods.filter((name) => typeof EventStore.prototype[name] !== 'function'),
      ...statics.filter((name) => typeof EventStore[name] !== 'function').map((name) => `static ${name}`),
    ];
    if (missing.length > 0) {
      self.postMessage(`missing ${missing.join(', ')}`);
      return;
    }
    const store = EventStore.inMemory();
    const seen = [];
    const unsubscribe = store.subscribe(0, (event) => seen.push(event.position));
    const changes = store.changes(0);
    const next = changes.next();
    const answer = store.createUser(id, { userId: id, email: `${id}@example.com` });
    const changed = await next;
    unsubscribe();
    await changes.return();
    let report = `created at ${answer.event.position}; subscribe saw ${seen.join(',')}; changes gave ${changed.value.position}`;
    let synced;
    if (hub) {
      synced = await store.sync(hub.url, { apiKey: hub.apiKey, token: () => hub.token });
      report += `; sync pushed ${synced.pushed}, accepted ${synced.accepted}`;
    }
    // Every other method the types declare, called once: one the table
    // does not know is reported, so the table keeps up with the types.
    const other = EventStore.inMemory();
    const calls = {
      createUserWithStatus: () => other.createUserWithStatus(id, { userId: id, email: `${id}@example.com` }).status === 201,
      updateUser: () => other.updateUser(id, { lastName: 'Doe' }).success,
      user: () => other.user(id).lastName === 'Doe',
      events: () => other.events().length === 2,
      headPosition: () => other.headPosition() === 2,
      verify: () => other.verify() === undefined,
      snapshot: () => EventStore.fromSnapshot(other.snapshot()).headPosition() === 2,
      pending: () => other.pending().length === 2,
      rejections: () => other.rejections().length === 0,
      pullCursor: () => other.pullCursor() === 0,
      push: () => other.push().length > 0,
      deleteUser: () => other.deleteUser(id).event.eventType === 'UserErased' && other.user(id).erased === true,
      // Called above: sync applies a reply and imports pull batches.
      createUser: () => answer.success,
      subscribe: () => seen.length === 1,
      changes: () => changed.value.position === 1,
      sync: () => synced?.accepted === 1,
      applyReply: () => synced?.accepted === 1 && store.pending().length === 0,
      importBatch: () => synced !== undefined && store.pullCursor() >= 1,
      close: () => other.close() === undefined,
    };
    const failing = [
      ...methods.filter((name) => !(name in calls)).map((name) => `${name} (not called)`),
      ...Object.keys(calls).filter((name) => !calls[name]()), // in the table's order: close last
    ];
    if (failing.length > 0) report += `; failing ${failing.join(', ')}`;
    const opened = await EventStore.openOpfs(`${id}.redb`);
    opened.close();
    self.postMessage(report);
  } catch (error) {
    self.postMessage(`failed: ${error.name}: ${error.message}`);
  }
};
