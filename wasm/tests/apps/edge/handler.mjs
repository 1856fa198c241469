// A request-scoped replica in an edge function: the snapshot comes in with
// the request (or from a KV store), the store answers as the API would, and
// the new snapshot goes back out. Nothing outlives the request.
import init, { EventStore } from 'spkey-store';

export async function handle(request, snapshot) {
  await init();
  const store = snapshot ? EventStore.fromSnapshot(snapshot) : EventStore.inMemory();
  const id = new URL(request.url).pathname.split('/')[2];
  const { status, body } = store.createUserWithStatus(id, await request.json());
  const response = new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json' },
  });
  return { response, snapshot: store.snapshot() };
}
