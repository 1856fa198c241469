// EventStore.openShared: one OPFS store for every tab of an origin. Each
// tab starts the package's worker (shared-worker.js); one of them holds
// the store (a Web Lock elects it) and the others' calls reach it over a
// BroadcastChannel. Every method is async here; subscribe and changes work
// across tabs (the holder announces each change), with the argument check
// and the async iterator of subscribe.js, which build.sh imports here when
// it makes this the web entry's `installShared`.

function named(name, message, extra) {
  return Object.assign(new Error(message), { name }, extra);
}

class SharedEventStore {
  constructor(name, worker, token) {
    this.name = name;
    this.worker = worker;
    this.token = token;
    this.client = crypto.randomUUID();
    this.channel = new BroadcastChannel(`spkey-store:${name}`);
    this.calls = new Map();
    this.nextId = 0;
    this.subscribers = new Set();
    this.delivering = Promise.resolve();
    this.holder = null;
    this.closed = false;
    this.channel.onmessage = ({ data }) => this.receive(data);
    this.channel.postMessage({ type: 'hello' });
  }

  receive(data) {
    if (data?.type === 'result' && data.client === this.client) {
      const call = this.calls.get(data.id);
      if (!call) return; // answered already (a resent call answered twice)
      this.calls.delete(data.id);
      if (data.ok) call.resolve(data.value);
      else call.reject(named(data.error.name, data.error.message, data.error.status ? { status: data.error.status } : {}));
    } else if (data?.type === 'holder') {
      this.holder = data.token;
      // A new holder: what the old one left unanswered is asked again.
      for (const call of this.calls.values()) this.channel.postMessage(call.message);
      this.deliver();
    } else if (data?.type === 'changed') {
      this.deliver();
    }
  }

  call(method, ...args) {
    if (this.closed) return Promise.reject(named('StoreClosedError', 'the store was closed'));
    return new Promise((resolve, reject) => {
      const id = ++this.nextId;
      const message = { type: 'call', client: this.client, id, method, args };
      this.calls.set(id, { message, resolve, reject });
      this.channel.postMessage(message);
    });
  }

  /** Whether this tab's worker holds the store now. */
  get isHolder() {
    return this.holder === this.token;
  }

  createUser(id, body) { return this.call('createUser', id, body); }
  createUserWithStatus(id, body) { return this.call('createUserWithStatus', id, body); }
  updateUser(id, body) { return this.call('updateUser', id, body); }
  deleteUser(id, body) { return this.call('deleteUser', id, body); }
  user(id) { return this.call('user', id); }
  events(fromPosition, limit) { return this.call('events', fromPosition, limit); }
  headPosition() { return this.call('headPosition'); }
  verify() { return this.call('verify'); }
  snapshot() { return this.call('snapshot'); }
  push() { return this.call('push'); }
  applyReply(reply) { return this.call('applyReply', reply); }
  importBatch(batch) { return this.call('importBatch', batch); }
  pullCursor() { return this.call('pullCursor'); }
  pending() { return this.call('pending'); }
  rejections() { return this.call('rejections'); }
  /** Syncs through the holder (an AbortSignal cannot cross to it, nor can
   *  a function: a token function is asked here, and once more after a
   *  401). */
  async sync(url, { apiKey, token } = {}) {
    const run = async () =>
      this.call('sync', url, { apiKey, token: typeof token === 'function' ? await token() : token });
    try {
      return await run();
    } catch (error) {
      if (error?.name !== 'HubRefusedError' || error.status !== 401 || typeof token !== 'function') throw error;
      return run();
    }
  }

  subscribe(fromPosition, onEvent) {
    checkSubscription(fromPosition, onEvent);
    const sub = { cursor: fromPosition, onEvent };
    this.subscribers.add(sub);
    this.deliver();
    return () => this.subscribers.delete(sub);
  }

  changes(fromPosition) {
    return iterate(async (onEvent) =>
      this.subscribe(fromPosition ?? (await this.headPosition()), onEvent));
  }


  /** Delivers each subscriber the events after its cursor, one delivery at
   *  a time, so that every event reaches it once and in order. */
  deliver() {
    this.delivering = this.delivering.then(async () => {
      for (const sub of [...this.subscribers]) {
        let events;
        try {
          events = await this.call('events', sub.cursor + 1);
        } catch {
          return; // closed; or retried on the next announcement
        }
        for (const event of events) {
          if (!this.subscribers.has(sub) || event.position <= sub.cursor) continue;
          sub.cursor = event.position;
          try {
            sub.onEvent(event);
          } catch (error) {
            queueMicrotask(() => { throw error; });
          }
        }
      }
    });
  }

  /** Stops this tab's worker (another tab's takes over if this one held
   *  the store) and fails what is still unanswered. */
  close() {
    this.closed = true;
    this.channel.close();
    this.worker.terminate();
    for (const call of this.calls.values()) call.reject(named('StoreClosedError', 'the store was closed'));
    this.calls.clear();
  }
}

/** How long openShared waits for a holder's first answer unless told. */
const OPEN_TIMEOUT_MS = 30_000;

/** The package's store errors pass through as they are; any other failure
 *  to start the worker (its script or the .wasm not found, …) is a
 *  NotSupportedError naming it. */
const STORE_ERRORS = new Set(['StoreLockedError', 'CorruptStoreError', 'UnsupportedFormatError', 'NotAStoreError', 'StorageError']);

/** Rejects once `worker` reports that it could not start. */
function failureOf(worker) {
  return new Promise((_, reject) => {
    worker.addEventListener('error', (event) => {
      reject(named('NotSupportedError', `the shared store's worker did not start: ${event.message || 'its script failed to load'}`));
    });
    worker.addEventListener('message', ({ data }) => {
      if (data?.type !== 'failed') return;
      const { name, message } = data.error;
      reject(STORE_ERRORS.has(name) ? named(name, message) : named('NotSupportedError', `the shared store did not open: ${name}: ${message}`));
    });
  });
}

/** @param {() => Worker} startWorker the package's worker, written by the
 *  entry as `new Worker(new URL('./shared-worker.js', import.meta.url), …)`
 *  so that bundlers find it and build it as a worker. */
function installShared(EventStore, startWorker) {
  /**
   * One OPFS store shared by every tab of the origin: resolves once a
   * holder answers; rejects when this tab's worker cannot start, or after
   * `timeoutMs` with no holder.
   * @param {string} name
   * @param {{ worker?: (name: string) => Worker, timeoutMs?: number }} [options]
   */
  EventStore.openShared = async function openShared(name, options = {}) {
    if (typeof BroadcastChannel === 'undefined' || typeof navigator === 'undefined' || !navigator.locks || typeof Worker === 'undefined') {
      throw named('NotSupportedError', 'openShared needs Worker, BroadcastChannel and Web Locks (a browser)');
    }
    const token = crypto.randomUUID();
    const worker = options.worker ? options.worker(`spkey-store:${name}#${token}`) : startWorker();
    worker.postMessage({ type: 'start', name, token });
    const store = new SharedEventStore(name, worker, token);
    let timer;
    const timeout = new Promise((_, reject) => {
      const ms = options.timeoutMs ?? OPEN_TIMEOUT_MS;
      timer = setTimeout(() => reject(named('TimeoutError', `no tab's worker opened the shared store ${name} within ${ms} ms`)), ms);
    });
    const failed = failureOf(worker);
    failed.catch(() => {}); // after the open, the store's calls report failures
    try {
      await Promise.race([store.headPosition(), failed, timeout]);
    } catch (error) {
      store.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return store;
  };
}
