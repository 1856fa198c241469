// The worker behind EventStore.openShared: every tab that opens a shared
// store starts one; they queue on a Web Lock named after the store, and the
// holder opens the OPFS store and answers every tab's calls over a
// BroadcastChannel. When the holder's tab closes or crashes, the browser
// releases its lock and its OPFS handle, and the next worker in the queue
// takes over and announces itself; clients then resend what was
// unanswered (every call is safe to repeat: a repeated createUser is the
// API's replay, 200 with the original body).
import init, { EventStore } from './index.js';

const [, name, token] = self.name.match(/^spkey-store:(.*)#([^#]*)$/) ?? [];
const channel = new BroadcastChannel(`spkey-store:${name}`);
const methods = new Set([
  'createUser', 'createUserWithStatus', 'updateUser', 'user', 'events', 'headPosition', 'verify', 'snapshot',
  'push', 'applyReply', 'importBatch', 'pullCursor', 'pending', 'rejections', 'sync',
]);

/** Opens the OPFS store, waiting while the last holder's handle is released. */
async function open() {
  for (let attempt = 0; ; attempt++) {
    try {
      return await EventStore.openOpfs(name);
    } catch (error) {
      if (error.name !== 'StoreLockedError' || attempt >= 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

navigator.locks.request(`spkey-store:${name}`, async () => {
  await init();
  const store = await open();
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
  // Held until this worker ends: its tab closing or crashing frees it.
  await new Promise(() => {});
});
