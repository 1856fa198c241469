// Code shared with the browser: init() is a no-op in Node, Deno and Bun.
import init, { EventStore } from 'spkey-store';

await init();
const store = EventStore.inMemory();
console.log(store.headPosition()); // 0
