// The README's worker, timed (absolute ms, converted by the page).
import init, { EventStore } from 'spkey-store';

const now = () => performance.timeOrigin + performance.now();
const marks = { start: now() };
const ready = init()
  .then(() => { marks.init = now(); return EventStore.openOpfs('users.redb'); })
  .then((store) => { marks.open = now(); return store; });
self.onmessage = async ({ data: { id, body } }) => {
  const store = await ready;
  const answer = store.createUser(id, body);
  marks.created = now();
  self.postMessage({ answer, marks });
};
