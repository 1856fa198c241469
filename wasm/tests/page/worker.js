// Holds the OPFS store: sync access handles exist only in dedicated workers.
import init, { EventStore } from '/pkg/web/index.js';

const ready = init();
const stores = new Map();

async function open(name) {
  if (!stores.has(name)) stores.set(name, await EventStore.openOpfs(name));
  return stores.get(name);
}

const actions = {
  // Leaves the store open: the test then kills the browser under it.
  async create({ name, users }) {
    const store = await open(name);
    return users.map((u) => store.createUser(u.userId, u));
  },
  // Throughput for wasm/bench/throughput.mjs: n new users, timed here.
  async bench({ n, opfs }) {
    const store = opfs
      ? await EventStore.openOpfs(`bench-${Date.now()}-${Math.random()}.redb`)
      : EventStore.inMemory();
    const work = Array.from({ length: n }, (_, i) => {
      const id = `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
      return [id, JSON.stringify({ userId: id, email: `bench${i}@example.com`, firstName: 'Bench', phoneNumber: '+1-555-0123' })];
    });
    const start = performance.now();
    for (const [id, body] of work) {
      if (store.createUser(id, body).success !== true) throw new Error('not created');
    }
    const rate = n / ((performance.now() - start) / 1000);
    store.close();
    return rate;
  },
  // Syncs the OPFS store with a spkey-hub on another origin (CORS). With
  // `tokens`, the token is a function giving each in turn (then the last):
  // a provider whose first token has expired. Answers the summary and how
  // often the function was asked.
  async sync({ name, url, apiKey, token, tokens }) {
    const store = await open(name);
    let asked = 0;
    const provider = async () => tokens[Math.min(asked++, tokens.length - 1)];
    const summary = await store.sync(url, { apiKey, token: tokens ? provider : token });
    return tokens ? { ...summary, asked } : summary;
  },
  async read({ name, ids }) {
    const store = await open(name);
    store.verify();
    return { head: store.headPosition(), users: ids.map((id) => store.user(id)) };
  },
};

self.onmessage = async ({ data: { call, action, args } }) => {
  try {
    await ready;
    self.postMessage({ call, ok: true, value: await actions[action](args) });
  } catch (error) {
    self.postMessage({ call, ok: false, value: `${error.name}: ${error.message}` });
  }
};
