import { EventStore } from 'spkey-store';

const store = EventStore.inMemory();
const id = '550e8400-e29b-41d4-a716-446655440000';
const { status, body } = store.createUserWithStatus(id, { userId: id, email: 'user@example.com' });
if (body.success) console.log(status, body.event.eventId); // 201 …
console.log(store.user(id));             // { userId, email, version: 1, createdAt }
console.log(store.events(1, 10));        // RecordedEvent[]
