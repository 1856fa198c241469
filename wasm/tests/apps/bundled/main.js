// The page of the bundler fixtures: starts the worker the bundler found by
// its `new URL(…, import.meta.url)` and shows the worker's report.
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
worker.onmessage = ({ data: report }) => {
  document.title = report;
};
worker.onerror = (event) => {
  document.title = `failed: the worker did not start (${event.message ?? 'no message'})`;
};
worker.postMessage(crypto.randomUUID());
