// Where the .wasm is, for a bundler that cannot follow the package's own
// `new URL(…, import.meta.url)`: nothing (the package finds it) except
// under esbuild, whose test replaces this file with the README's recipe.
export default undefined;
