// The core built for wasm32-wasip1 (the spkey CLI) under Node's WASI, on a
// real file that the native CLI then reads: one file format everywhere.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WASI } from 'node:wasi';
import { readFile, mkdtemp } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const wasiCli = join(root, 'target/wasm32-wasip1/debug/spkey.wasm');
const nativeCli = join(root, 'target/debug/spkey');
const module = await WebAssembly.compile(await readFile(wasiCli));

/** Runs the WASI spkey with `dir` mounted at /data; returns exit code and stdout. */
async function spkey(dir, ...args) {
  const out = join(dir, `stdout-${Math.random()}`);
  const { openSync, closeSync } = await import('node:fs');
  const fd = openSync(out, 'w');
  const wasi = new WASI({
    version: 'preview1',
    args: ['spkey', '--db', '/data/users.redb', ...args],
    preopens: { '/data': dir },
    stdout: fd,
    returnOnExit: true,
  });
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  const code = wasi.start(instance);
  closeSync(fd);
  return { code, stdout: await readFile(out, 'utf8') };
}

test('the WASI build writes a store file the native build reads, and back', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'spkey-wasi-'));
  const id = '550e8400-e29b-41d4-a716-446655440000';
  const body = JSON.stringify({ userId: id, email: 'wasi@example.com' });

  const created = await spkey(dir, 'create-user', id, body);
  assert.equal(created.code, 0);
  assert.equal(JSON.parse(created.stdout).event.position, 1);

  const native = JSON.parse(execFileSync(nativeCli, ['--db', join(dir, 'users.redb'), 'user', id], { encoding: 'utf8' }));
  assert.equal(native.email, 'wasi@example.com');

  const other = '6fa459ea-ee8a-3ca4-894e-db77e160355e';
  execFileSync(nativeCli, ['--db', join(dir, 'users.redb'), 'create-user', other, JSON.stringify({ userId: other, email: 'native@example.com' })]);
  const replay = await spkey(dir, 'create-user', id, body);
  const verify = await spkey(dir, 'verify');
  const conflict = await spkey(dir, 'create-user', id, JSON.stringify({ userId: id, email: 'native@example.com' }));

  assert.equal(replay.code, 0);
  assert.equal(verify.code, 0);
  assert.match(verify.stdout, /sound: 2 events, 2 users/);
  assert.equal(conflict.code, 1);
  assert.equal(JSON.parse(conflict.stdout).code, 409);
});
