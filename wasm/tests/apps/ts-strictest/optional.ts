// Under exactOptionalPropertyTypes a field may still be `undefined`: the
// runtime leaves it out, as JSON.stringify does, and the types say so.
import { EventStore } from 'spkey-store';

const store = EventStore.inMemory();
const id = '550e8400-e29b-41d4-a716-446655440000';
const middle: string | undefined = undefined;
store.createUser(id, { userId: id, email: 'user@example.com', firstName: middle });
store.updateUser(id, { email: undefined, lastName: 'Doe' });
