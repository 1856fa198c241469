// The page of the bundler fixtures: starts the worker the bundler found by
// its `new URL(…, import.meta.url)` and shows the worker's report. For the
// two-tab tests it also opens the package's shared store, whose worker the
// bundler found in the package's entry.
import { openUsers } from './tabs.js';

window.openShared = async () => {
  window.store = await openUsers((event) => console.log(event.position));
  return window.store.isHolder;
};

const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
worker.onmessage = ({ data: report }) => {
  document.title = report;
};
worker.onerror = (event) => {
  document.title = `failed: the worker did not start (${event.message ?? 'no message'})`;
};
// The test's hub, when it gives one: `#hub=…&apiKey=…&token=…`.
const hub = new URLSearchParams(location.hash.slice(1));
worker.postMessage({
  id: crypto.randomUUID(),
  hub: hub.has('hub') ? { url: hub.get('hub'), apiKey: hub.get('apiKey'), token: hub.get('token') } : null,
});
