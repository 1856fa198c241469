// What the types refuse: each line below must be an error under strict tsc
// (an unused @ts-expect-error fails the check).
import { EventStore } from 'spkey-store';

const store = EventStore.inMemory();
const id = '550e8400-e29b-41d4-a716-446655440000';
// @ts-expect-error misspelled fields do not compile
store.createUser(id, { userID: id, emial: 'user@example.com' });
const answer = store.createUser(id, { userId: id, email: 'user@example.com' });
// @ts-expect-error an error body has no event until narrowed
console.log(answer.event);
if (!answer.success) {
  // @ts-expect-error a refusal is never a 201
  const created: 201 = answer.code;
  console.log(created);
}
const [event] = store.events();
if (event?.eventType === 'UserCreationRejected') {
  // @ts-expect-error a rejection's data has no email
  console.log(event.data.email);
}

// Live changes and the shared store are typed too.
const stop = store.subscribe(0, (event) => console.log(event.position, event.eventType));
stop();
for await (const event of store.changes()) {
  if (event.eventType === 'UserCreated') console.log(event.data.email);
  break;
}
const shared = await EventStore.openShared('users.redb');
const sharedAnswer = await shared.createUser(id, { userId: id, email: 'user@example.com' });
if (sharedAnswer.success) console.log(sharedAnswer.event.position, shared.isHolder);
// @ts-expect-error the shared store's calls are async
const head: number = shared.headPosition();
console.log(head);
