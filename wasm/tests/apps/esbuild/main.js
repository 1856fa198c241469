const worker = new Worker('./worker.js', { type: 'module' });
worker.onmessage = ({ data: answer }) => {
  document.title = answer.success ? `created at ${answer.event.position}` : `refused ${answer.code}`;
};
const id = crypto.randomUUID();
worker.postMessage({ id, body: { userId: id, email: `${id}@example.com` } });
