// worker.js, bundled with: esbuild worker.js --bundle --format=esm --loader:.wasm=file --outdir=dist
import init, { EventStore } from 'spkey-store';
import wasmUrl from 'spkey-store/spkey_store_bg.wasm'; // esbuild copies it next to the bundle

const ready = init({ module_or_path: wasmUrl }).then(() => EventStore.openOpfs('users.redb'));
ready.catch(() => {}); // answered to each message below
self.onmessage = async ({ data: { id, body } }) => {
  try {
    self.postMessage((await ready).createUser(id, body));
  } catch (error) {
    self.postMessage({ success: false, code: error.name, message: error.message });
  }
};
