// webpack.config.mjs — webpack 5, no loaders: it follows
// `new URL(…, import.meta.url)` to the worker, the package's shared-store
// worker and its .wasm by itself (with or without "type": "module").
import { fileURLToPath } from 'node:url';

export default {
  mode: 'production',
  entry: './main.js',
  output: { path: fileURLToPath(new URL('./dist/', import.meta.url)), clean: true },
};
