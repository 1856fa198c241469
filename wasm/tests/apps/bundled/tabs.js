// tabs.js — one store for every tab of the app (Vite, webpack: no config)
import { EventStore } from 'spkey-store';

export async function openUsers(render) {
  const store = await EventStore.openShared('users.redb');
  store.subscribe(0, (event) => render(event)); // every tab sees every change
  return store; // the same methods, async: await store.createUser(id, body)
}
