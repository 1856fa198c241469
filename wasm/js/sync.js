// EventStore.prototype.sync: a device syncing with a spkey-hub over fetch —
// push what is pending, apply the reply, pull until caught up — written over
// the package's push / applyReply / importBatch, so the wasm does not grow.
// The same steps as the Rust `spkey_store::http::sync` and `spkey sync`;
// every step is idempotent, so after any failure the same call is safe to
// run again. build.sh makes an ES module and a CommonJS module of this file.

/** The most pull rounds one sync makes (a hub appending faster than a
 *  device imports must not hold it forever). */
const MAX_PULLS = 1000;

function hubError(name, message, extra) {
  const error = new Error(message);
  error.name = name;
  return Object.assign(error, extra);
}

/** The batch format this package reads, sent with every request so that
 *  a hub of another format refuses the pull, naming both. The core's
 *  `BATCH_FORMAT`: tests/it/tidy.rs holds the two equal. */
const BATCH_FORMAT = '4';

/** A token of the moment: the string, or what the function gives (it may
 *  return a promise). */
async function tokenOf(token) {
  const value = typeof token === 'function' ? await token() : token;
  if (typeof value !== 'string' || value === '') {
    throw hubError('InvalidArgumentError', 'the token function must give a non-empty string');
  }
  return value;
}

/** The hub's base URL without trailing slashes; an argument error for
 *  anything but an absolute http(s) URL, before any request. */
function hubBase(url) {
  let parsed;
  try {
    parsed = new URL(String(url));
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    throw hubError('InvalidArgumentError', `sync needs the hub's absolute http(s) URL, not ${JSON.stringify(String(url))}`);
  }
  return parsed.href.replace(/\/+$/, '');
}

function installSync(EventStore) {
  /**
   * @param {string} url the hub's base URL
   * @param {{ apiKey: string, token: string | (() => string | Promise<string>), signal?: AbortSignal }} options
   *   `token` may be a function, called before each request (tokens
   *   expire); after a 401 it is asked once more.
   * @returns {Promise<{ pushed: number, accepted: number, rejected: number, pulled: number, cursor: number }>}
   */
  EventStore.prototype.sync = async function sync(url, { apiKey, token, signal } = {}) {
    if (typeof apiKey !== 'string' || !['string', 'function'].includes(typeof token)) {
      throw hubError(
        'InvalidArgumentError',
        'sync needs { apiKey, token }: apiKey a string, token a string or a function giving one',
      );
    }
    const base = hubBase(url);
    const once = async (path, init) => {
      const bearer = await tokenOf(token);
      let response;
      let bytes;
      try {
        response = await fetch(base + path, {
          ...init,
          signal,
          headers: {
            ...init.headers,
            'X-API-Key': apiKey,
            Authorization: `Bearer ${bearer}`,
            'X-Spkey-Batch-Format': BATCH_FORMAT,
          },
        });
        bytes = new Uint8Array(await response.arrayBuffer());
      } catch (cause) {
        if (signal && signal.aborted) {
          // Named as the platform names an aborted fetch; every step done
          // so far stands, and the next sync carries on from there.
          if (signal.reason && signal.reason.name === 'TimeoutError') {
            throw hubError('TimeoutError', `sync timed out: ${cause.message}`, { cause });
          }
          throw hubError('AbortError', `sync aborted: ${cause.message}`, { cause });
        }
        throw hubError('HubUnreachableError', `cannot reach the hub: ${cause.message}`, { cause });
      }
      if (response.status !== 200) {
        let message;
        try {
          message = JSON.parse(new TextDecoder().decode(bytes)).message;
        } catch {
          message = new TextDecoder().decode(bytes);
        }
        throw hubError('HubRefusedError', `the hub answered ${response.status}: ${message}`, {
          status: response.status,
        });
      }
      return bytes;
    };
    // After a 401, a token function is asked once more: it may have expired.
    const call = async (path, init) => {
      try {
        return await once(path, init);
      } catch (error) {
        if (error.name !== 'HubRefusedError' || error.status !== 401 || typeof token !== 'function') {
          throw error;
        }
        return once(path, init);
      }
    };
    const summary = { pushed: 0, accepted: 0, rejected: 0, pulled: 0, cursor: this.pullCursor() };
    // pending() only reads; push() is a sync step (a write), so an idle
    // device skips it.
    const pushed = this.pending().length;
    if (pushed > 0) {
      const reply = await call('/sync/push', {
        method: 'POST',
        headers: { 'Content-Type': 'application/octet-stream' },
        body: this.push(),
      });
      const applied = this.applyReply(reply);
      Object.assign(summary, { pushed, accepted: applied.accepted, rejected: applied.rejected });
    }
    for (let round = 0; round < MAX_PULLS; round++) {
      const cursor = this.pullCursor();
      const imported = this.importBatch(await call(`/sync/pull?since=${cursor}`, { method: 'GET' }));
      summary.pulled += imported.imported;
      summary.cursor = imported.cursor;
      if (imported.cursor === cursor) break;
    }
    return summary;
  };
}
