// EventStore.prototype.subscribe and .changes: live changes, written in the
// package's JS over the wasm's events(), so the wasm does not grow. Every
// call that can append (createUser, createUserWithStatus, updateUser, applyReply,
// importBatch, and sync through them) is followed by a delivery: each
// subscriber gets every event after its cursor once, in position order,
// in a microtask after the call returns (so a callback never runs inside a
// store call). build.sh makes an ES module and a CommonJS module of this file.

function invalid(message) {
  const error = new Error(message);
  error.name = 'InvalidArgumentError';
  return error;
}

/** Refuses a subscription's arguments the way every store does. */
function checkSubscription(fromPosition, onEvent) {
  if (!Number.isSafeInteger(fromPosition) || fromPosition < 0) {
    throw invalid(`fromPosition must be a whole number from 0 to 2^53 - 1, got ${fromPosition}`);
  }
  if (typeof onEvent !== 'function') throw invalid('subscribe needs a function to call');
}

/**
 * The async iterator of `changes`, over a store's `subscribe`: `start(onEvent)`
 * subscribes (or resolves to the unsubscribe function once it has);
 * `break` unsubscribes.
 */
function iterate(start) {
  const queue = [];
  let wake = null;
  const started = Promise.resolve(
    start((event) => {
      queue.push(event);
      if (wake) {
        wake();
        wake = null;
      }
    }),
  );
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      await started;
      while (queue.length === 0) await new Promise((resolve) => (wake = resolve));
      return { value: queue.shift(), done: false };
    },
    async return() {
      (await started)();
      return { value: undefined, done: true };
    },
  };
}

function installSubscribe(EventStore) {
  const subscribers = new WeakMap(); // store → Set of { cursor, onEvent }
  const scheduled = new WeakSet();

  function deliver(store) {
    scheduled.delete(store);
    const subs = subscribers.get(store);
    if (!subs) return;
    for (const sub of subs) {
      if (!subs.has(sub)) continue; // unsubscribed by an earlier callback
      let events;
      try {
        events = store.events(sub.cursor + 1);
      } catch (error) {
        if (error.name === 'StoreClosedError') return;
        throw error;
      }
      for (const event of events) {
        sub.cursor = event.position;
        if (!subs.has(sub)) break;
        try {
          sub.onEvent(event);
        } catch (error) {
          // One subscriber's failure must not starve the others: report it
          // as an uncaught error, after this delivery.
          queueMicrotask(() => {
            throw error;
          });
        }
      }
    }
  }

  function changed(store) {
    if (subscribers.get(store)?.size && !scheduled.has(store)) {
      scheduled.add(store);
      queueMicrotask(() => deliver(store));
    }
  }

  for (const name of ['createUser', 'createUserWithStatus', 'updateUser', 'applyReply', 'importBatch']) {
    const original = EventStore.prototype[name];
    EventStore.prototype[name] = function (...args) {
      try {
        return original.apply(this, args);
      } finally {
        changed(this);
      }
    };
  }

  /**
   * Calls `onEvent` with every event after `fromPosition`, once each, in
   * position order — those already recorded, then each as it is recorded.
   * @param {number} fromPosition
   * @param {(event: object) => void} onEvent
   * @returns {() => void} unsubscribe
   */
  EventStore.prototype.subscribe = function subscribe(fromPosition, onEvent) {
    checkSubscription(fromPosition, onEvent);
    let subs = subscribers.get(this);
    if (!subs) subscribers.set(this, (subs = new Set()));
    const sub = { cursor: fromPosition, onEvent };
    subs.add(sub);
    changed(this);
    return () => {
      subs.delete(sub);
    };
  };

  /**
   * The events after `fromPosition` (default: the head now), as an async
   * iterator that waits for new ones; `break` ends it.
   * @param {number} [fromPosition]
   */
  EventStore.prototype.changes = function changes(fromPosition = this.headPosition()) {
    return iterate((onEvent) => this.subscribe(fromPosition, onEvent));
  };

}
