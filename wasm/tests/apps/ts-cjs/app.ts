// A CommonJS TypeScript project (`module: node16`): the import compiles to
// `require`, and the package's `require` types are the ones it checks.
import { EventStore, type CreateUserRequest } from 'spkey-store';

const store = EventStore.inMemory();
const id = '550e8400-e29b-41d4-a716-446655440000';
const request: CreateUserRequest = { userId: id, email: 'user@example.com' };
const answer = store.createUser(id, request);
console.log(answer.success ? answer.event.position : answer.code);
