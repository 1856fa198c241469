// Creates `count` users in an OPFS store, one durable command at a time,
// and reports the wasm heap (linear memory) before and after.
import init, { EventStore } from '/pkg/web/index.js';

self.onmessage = async ({ data: count }) => {
  const wasm = await init();
  const store = await EventStore.openOpfs('heap.redb');
  const before = wasm.memory.buffer.byteLength;
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const id = `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
    const answer = store.createUser(id, { userId: id, email: `heap${i}@example.com`, firstName: 'Heap', phoneNumber: '+1-555-0123' });
    if (!answer.success) throw new Error(`user ${i} refused`);
  }
  const seconds = (performance.now() - started) / 1000;
  self.postMessage({ before, after: wasm.memory.buffer.byteLength, head: store.headPosition(), seconds });
};
