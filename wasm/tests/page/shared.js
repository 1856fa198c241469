// A tab of the shared-store tests: opens the store every tab shares,
// records every change its subscription delivers, and writes on demand.
import init, { EventStore } from '/pkg/web/index.js';

await init();
window.openShared = async (name) => {
  window.store = await EventStore.openShared(name);
  window.seen = [];
  window.store.subscribe(0, (event) => window.seen.push(event.position));
  return true;
};
window.createMany = (users) => Promise.all(users.map((u) => window.store.createUser(u.userId, u)));
window.isHolder = () => window.store.isHolder;
// Writes users one after another until told to stop, keeping the id of
// every one acknowledged (201, or 200 for a replay after a failover).
window.acked = [];
window.writing = false;
window.startWriting = (prefix) => {
  window.writing = true;
  (async () => {
    for (let n = 0; window.writing; n++) {
      const userId = `00000000-0000-4000-${prefix}-${n.toString(16).padStart(12, '0')}`;
      const answer = await window.store.createUser(userId, { userId, email: `${prefix}-${n}@example.com` });
      if (answer.success) window.acked.push(userId);
    }
  })();
};
window.stopWriting = () => { window.writing = false; };
window.missing = async (ids) => {
  const missing = [];
  for (const id of ids) if (!(await window.store.user(id))) missing.push(id);
  return missing;
};
window.ready = true;
