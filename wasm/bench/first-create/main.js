// The README's page, timed: every mark is in ms since navigation began.
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
const since = (absolute) => absolute - performance.timeOrigin;
worker.onmessage = ({ data: { answer, marks } }) => {
  const answered = performance.now();
  window.timings = {
    workerStart: since(marks.start),
    init: marks.init - marks.start,
    openOpfs: marks.open - marks.init,
    createUser: marks.created - marks.open,
    firstAnswer: answered,
    success: answer.success === true,
  };
};
const id = crypto.randomUUID();
worker.postMessage({ id, body: { userId: id, email: `${id}@example.com` } });
