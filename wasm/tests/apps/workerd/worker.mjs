// A Cloudflare Worker around the edge handler: each POST to /users/… creates
// a user in a replica carried in the worker's memory between requests (a
// real app keeps the snapshot in KV or a Durable Object). GET /check runs
// the package's JS-side methods in workerd: a create seen by subscribe()
// and changes(), then sync() with the hub the query names.
import init, { EventStore } from 'spkey-store';
import { handle } from '../edge/handler.mjs';

let snapshot = null;

async function check(query) {
  await init();
  const store = EventStore.inMemory();
  const seen = [];
  store.subscribe(0, (event) => seen.push(event.position));
  const changes = store.changes(0);
  const next = changes.next();
  const id = crypto.randomUUID();
  store.createUser(id, { userId: id, email: `${id}@example.com` });
  const changed = await next;
  await changes.return();
  const synced = await store.sync(query.get('hub'), { apiKey: query.get('apiKey'), token: query.get('token') });
  return Response.json({ seen, changed: changed.value.position, pushed: synced.pushed, accepted: synced.accepted });
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === '/check') return check(url.searchParams);
    const answer = await handle(request, snapshot);
    snapshot = answer.snapshot;
    return answer.response;
  },
};
