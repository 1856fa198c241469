import init, { EventStore, type CreateUserRequest, type SpkeyError } from 'spkey-store';

await init();
const store = EventStore.inMemory();
const id = '550e8400-e29b-41d4-a716-446655440000';
const request: CreateUserRequest = { userId: id, email: 'user@example.com', firstName: 'John' };

const answer = store.createUser(id, request);
if (answer.success) {
  console.log('recorded at position', answer.event.position);
  if (answer.event.eventType === 'UserCreated') console.log(answer.event.data.email);
} else {
  console.log(answer.code, answer.details); // 400 | 409 | 413
}

const { status, body } = store.createUserWithStatus(id, request);
switch (status) {
  case 201:
  case 200:
    console.log(status, body.event.eventId);
    break;
  case 409:
    console.log(body.details.map((d) => d.field));
    break;
}

try {
  store.verify();
} catch (error) {
  const { name } = error as SpkeyError;
  if (name === 'CorruptStoreError') console.log('restore from a snapshot');
}
