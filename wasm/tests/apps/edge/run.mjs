// Two requests through the handler, the snapshot carried between them: the
// second is a replay (200) of the first (201).
import { handle } from './handler.mjs';

const id = '550e8400-e29b-41d4-a716-446655440000';
const request = () =>
  new Request(`https://edge.example/users/${id}/CreateUser`, {
    method: 'POST',
    body: JSON.stringify({ userId: id, email: 'edge@example.com' }),
  });
const first = await handle(request(), null);
const second = await handle(request(), first.snapshot);
console.log(first.response.status, second.response.status, second.snapshot.length > 0);
