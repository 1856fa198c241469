// The worker behind EventStore.openShared: every tab that opens a shared
// store starts one; they queue on a Web Lock named after the store, and the
// holder opens the OPFS store and answers every tab's calls over a
// BroadcastChannel. When the holder's tab closes or crashes, the browser
// releases its lock and its OPFS handle, and the next worker in the queue
// takes over and announces itself; clients then resend what was
// unanswered (every call is safe to repeat: a repeated createUser is the
// API's replay, 200 with the original body).
//
// It imports the wasm glue and sync directly, not the package's entry
// (which starts this worker): a bundler then builds it as a worker of its
// own with no cycle.
import init, { EventStore } from './spkey_store.js';
import { installSync } from './sync.js';

installSync(EventStore);
const methods = new Set([
  'createUser', 'createUserWithStatus', 'updateUser', 'deleteUser', 'user', 'events', 'headPosition', 'verify', 'snapshot',
  'push', 'applyReply', 'importBatch', 'pullCursor', 'pending', 'rejections', 'sync',
]);

/** Opens the OPFS store, waiting while the last holder's handle is released. */
async function open(name) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await EventStore.openOpfs(name);
    } catch (error) {
      if (error.name !== 'StoreLockedError' || attempt >= 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** Queues for the store's lock; once held, opens the store and answers
 *  every tab's calls until this worker ends. A store that cannot open is
 *  reported to this worker's tab, whose openShared then fails. */
function start(name, token) {
  const channel = new BroadcastChannel(`spkey-store:${name}`);
  navigator.locks.request(`spkey-store:${name}`, async () => {
    let store;
    try {
      await init();
      store = await open(name);
    } catch (error) {
      self.postMessage({ type: 'failed', error: { name: error.name, message: error.message } });
      channel.close();
      return;
    }
    serve(channel, store, token);
    // Held until this worker ends: its tab closing or crashing frees it.
    await new Promise(() => {});
  });
}

function serve(channel, store, token) {
  const announce = () => channel.postMessage({ type: 'holder', token, head: store.headPosition() });
  channel.onmessage = async ({ data }) => {
    if (data?.type === 'hello') return announce();
    if (data?.type !== 'call') return;
    const { client, id, method, args } = data;
    const before = store.headPosition();
    let reply;
    try {
      if (!methods.has(method)) throw Object.assign(new Error(`no method ${method}`), { name: 'InvalidArgumentError' });
      reply = { type: 'result', client, id, ok: true, value: await store[method](...args) };
    } catch (error) {
      reply = { type: 'result', client, id, ok: false, error: { name: error.name, message: error.message, status: error.status } };
    }
    channel.postMessage(reply);
    const after = store.headPosition();
    if (after !== before) channel.postMessage({ type: 'changed', head: after });
  };
  announce();
}

// The store's name and this worker's token: in the worker's name when an
// app starts it (openShared's `worker` option), else in the first message
// from the tab that started it.
const [, named, token] = self.name.match(/^spkey-store:(.*)#([^#]*)$/) ?? [];
if (named !== undefined) {
  start(named, token);
} else {
  self.onmessage = ({ data }) => {
    if (data?.type !== 'start') return;
    self.onmessage = null;
    start(data.name, data.token);
  };
}
