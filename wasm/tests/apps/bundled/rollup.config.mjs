// Rollup 4: node-resolve finds the package's browser entry, and
// import-meta-assets emits the .wasm the package loads by
// `new URL(…, import.meta.url)`. The worker is an entry of its own, which
// the page's `new URL('./worker.js', …)` names as it is (main.js is left to
// Rollup, so the plugin does not copy the worker's unbundled source).
import { nodeResolve } from '@rollup/plugin-node-resolve';
import { importMetaAssets } from '@web/rollup-plugin-import-meta-assets';

export default {
  input: ['main.js', 'worker.js'],
  output: { dir: 'dist', format: 'es', entryFileNames: '[name].js' },
  plugins: [nodeResolve({ browser: true }), importMetaAssets({ exclude: ['main.js'] })],
};
