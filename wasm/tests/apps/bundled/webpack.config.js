// webpack 5, no loaders: it follows `new URL(…, import.meta.url)` to the
// worker and to the package's .wasm by itself.
import { fileURLToPath } from 'node:url';

export default {
  mode: 'production',
  entry: './main.js',
  output: { path: fileURLToPath(new URL('./dist/', import.meta.url)), clean: true },
};
