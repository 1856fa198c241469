// Every method the package's types declare must survive the bundler (the
// test writes methods.js from the .d.ts files), and the JS-side ones must
// work: a create seen by subscribe() and by changes(), then synced with
// the test's hub.
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
    if (hub) {
      const synced = await store.sync(hub.url, { apiKey: hub.apiKey, token: () => hub.token });
      report += `; sync pushed ${synced.pushed}, accepted ${synced.accepted}`;
    }
    self.postMessage(report);
  } catch (error) {
    self.postMessage(`failed: ${error.name}: ${error.message}`);
  }
};
