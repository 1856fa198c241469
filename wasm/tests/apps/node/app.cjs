const { EventStore } = require('spkey-store');

const store = EventStore.inMemory();
const id = '550e8400-e29b-41d4-a716-446655440000';
const answer = store.createUser(id, { userId: id, email: 'user@example.com' });
console.log(answer.success, answer.event.position); // true 1
