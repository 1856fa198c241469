// createUser through the package's Node entry (the fast .wasm), three
// rounds of N new users in one process, each on a fresh in-memory store:
// the first round holds the engine's compile tiers, the next two are warm.
// Runs as is under Node, Deno (`deno run --allow-read --allow-env`) and
// Bun; prints the three rates. throughput.mjs takes every runtime's
// figures (cold, warm) from this script; SPKEY_GLUE names other glue (its
// own .wasm beside it) to time instead.
//
//   node wasm/bench/rounds.cjs [N]        (after bash wasm/build.sh; N = 5000)
const { EventStore } = require(process.env.SPKEY_GLUE ?? '../pkg/node/spkey_store.js');

const n = Number(process.argv[2] ?? 5000);
const rates = [];
for (let round = 0; round < 3; round++) {
  const store = EventStore.inMemory();
  const work = Array.from({ length: n }, (_, i) => {
    const id = `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
    return [id, JSON.stringify({ userId: id, email: `bench${i}@example.com`, firstName: 'Bench', phoneNumber: '+1-555-0123' })];
  });
  const start = performance.now();
  for (const [id, body] of work) {
    if (store.createUser(id, body).success !== true) throw new Error('not created');
  }
  rates.push(Math.round(n / ((performance.now() - start) / 1000)));
  store.free();
}
console.log(rates.join(' / '));
