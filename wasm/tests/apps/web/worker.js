// worker.js
import init, { EventStore } from 'spkey-store';

// Set at once: messages that arrive while the store opens wait for it, and
// a store that cannot open is answered, never left waiting.
const ready = init().then(() => EventStore.openOpfs('users.redb')); // durable; one tab at a time
ready.catch(() => {}); // answered to each message below
self.onmessage = async ({ data: { id, body } }) => {
  try {
    self.postMessage((await ready).createUser(id, body)); // 201/200: success body; 400/409/413: error body
  } catch (error) {
    self.postMessage({ success: false, code: error.name, message: error.message });
  }
};
