// worker.js
import init, { EventStore } from 'spkey-store';

// The handler is set at once; messages that arrive while the store opens
// wait for it instead of being lost.
const ready = init().then(() => EventStore.openOpfs('users.redb')); // durable; one tab at a time
self.onmessage = async ({ data: { id, body } }) => {
  const store = await ready;
  self.postMessage(store.createUser(id, body)); // 201/200: success body; 400/409/413: error body
};
