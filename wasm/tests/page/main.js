// The page side of tests/page.test.mjs: OPFS through a dedicated worker,
// snapshots through IndexedDB on the main thread.
import init, { EventStore } from '/pkg/web/index.js';

const worker = new Worker('./worker.js', { type: 'module' });
let nextCall = 0;
const pending = new Map();
worker.onmessage = ({ data }) => {
  const { call, ok, value } = data;
  const { resolve, reject } = pending.get(call);
  pending.delete(call);
  ok ? resolve(value) : reject(new Error(value));
};

/** Runs `action` in the worker, which holds the OPFS store. */
window.inWorker = (action, args) =>
  new Promise((resolve, reject) => {
    const call = nextCall++;
    pending.set(call, { resolve, reject });
    worker.postMessage({ call, action, args });
  });

function idb(mode, run) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open('spkey-test', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('snapshots');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction('snapshots', mode);
      const request = run(tx.objectStore('snapshots'));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
    };
  });
}

/** Creates users in an in-memory store and saves its snapshot in IndexedDB. */
window.saveSnapshot = async (users) => {
  await init();
  const store = EventStore.inMemory();
  const answers = users.map((u) => store.createUser(u.userId, u));
  await idb('readwrite', (s) => s.put(store.snapshot(), 'store'));
  store.close();
  return answers;
};

/** Restores the snapshot from IndexedDB and reads the users back. */
window.restoreSnapshot = async (ids) => {
  await init();
  const bytes = await idb('readonly', (s) => s.get('store'));
  const store = EventStore.fromSnapshot(bytes);
  store.verify();
  return { head: store.headPosition(), users: ids.map((id) => store.user(id)) };
};

window.ready = true;
