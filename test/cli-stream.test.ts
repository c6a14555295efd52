// Long imports through the ogd binary: a 200 MB layer piped through stdin without
// buffering it, and Ctrl-C in the middle of an import leaving the store exactly as it
// was (same `ls`, same files under the home).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { access, readdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir, skipUnlessRoot, mountPoints } from './helpers/sandbox.js';

const main = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'lib', 'cli', 'main.js');
const MB = 1 << 20;
const BLOCK = 512;

function start(args: string[]): ChildProcessWithoutNullStreams & { output: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, [main, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  child.stdin.on('error', () => {}); // EPIPE once the child stops reading
  const output = once(child, 'close').then(([code]) => ({ code: code as number | null, stdout, stderr }));
  return Object.assign(child, { output });
}

/** A ustar header for a regular file (the format is simple enough to write by hand, and it keeps the generator independent of the code under test). */
function fileHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(size.toString(8).padStart(11, '0') + '\0', 124);
  h.write('14500000000\0', 136);
  h.write('        ', 148); // checksum placeholder: 8 spaces
  h.write('0', 156);
  h.write('ustar\0' + '00', 257);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

/** Writes a tar of `files` files of `size` bytes each into `sink`, respecting backpressure; stops early when `stop()` says so. */
async function writeTar(sink: NodeJS.WritableStream, files: number, size: number, stop: () => boolean = () => false, end = true): Promise<number> {
  const chunk = Buffer.alloc(MB, 0x61);
  let written = 0;
  let closed = false;
  sink.once('close', () => (closed = true));
  const put = async (b: Buffer): Promise<void> => {
    if (closed) return;
    written += b.length;
    // The reader may go away (that is the point of the Ctrl-C test): stop, don't throw.
    if (!sink.write(b)) {
      await new Promise<void>((resolveWait) => {
        const done = (): void => {
          sink.off('drain', done);
          sink.off('close', done);
          resolveWait();
        };
        sink.on('drain', done);
        sink.on('close', done);
      });
    }
  };
  for (let i = 0; i < files; i++) {
    if (stop() || closed) return written;
    await put(fileHeader(`big/file-${i}`, size));
    for (let left = size; left > 0; left -= chunk.length) {
      if (stop() || closed) return written;
      await put(left >= chunk.length ? chunk : chunk.subarray(0, left));
    }
    if (size % BLOCK !== 0) await put(Buffer.alloc(BLOCK - (size % BLOCK)));
  }
  await put(Buffer.alloc(2 * BLOCK));
  if (end) sink.end();
  return written;
}

async function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = start(args);
  child.stdin.end();
  return child.output;
}

async function tree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.map((e) => `${join(e.parentPath, e.name).slice(dir.length)}${e.isDirectory() ? '/' : ''}`).sort();
}

// Only this process's temp dirs are checked: other test runs may mount things meanwhile.
const PREFIX = join(tmpdir(), `ogd-cli-stream-${process.pid}-`);
/** What the CLI mounted under `dir` must be gone once the test ran `ogd cleanup`/`unmount`. */
async function assertNoMountsUnder(dir: string): Promise<void> {
  assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(dir + '/')), [], `no mount left under ${dir}`);
}

after(async () => {
  assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(PREFIX)), [], 'the tests leave the mount table as they found it');
});

test('a 200 MB layer piped through stdin is imported whole, without buffering it', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, `ogd-cli-stream-${process.pid}-`);
  const home = join(dir, 'store');
  const child = start(['--home', home, '--json', 'import', 'big', '-']);
  let peakRss = 0;
  const sampler = setInterval(async () => {
    try {
      const status = await import('node:fs/promises').then((fs) => fs.readFile(`/proc/${child.pid}/status`, 'utf8'));
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      peakRss = Math.max(peakRss, kb * 1024);
    } catch {
      // the child has exited
    }
  }, 50);
  const written = await writeTar(child.stdin, 4, 50 * MB);
  const { code, stdout, stderr } = await child.output;
  clearInterval(sampler);
  assert.equal(code, 0, stderr);
  assert.equal(written, 4 * (BLOCK + 50 * MB) + 2 * BLOCK);
  const result = JSON.parse(stdout) as { bytes: number; inputBytes: number; format: string };
  assert.equal(result.bytes, 200 * MB);
  assert.equal(result.inputBytes, written);
  assert.equal(result.format, 'tar');
  const root = JSON.parse((await run(['--home', home, '--json', 'metadata', 'big'])).stdout) as { metadata: Record<string, string> };
  for (let i = 0; i < 4; i++) assert.equal((await stat(join(root.metadata['RootDir']!, 'big', `file-${i}`))).size, 50 * MB);
  assert.ok(peakRss < 150 * MB, `peak RSS ${Math.round(peakRss / MB)} MB stays far below the layer's 200 MB`);
  assert.equal((await run(['--home', home, 'cleanup'])).code, 0);
  await assertNoMountsUnder(dir);
});

test('Ctrl-C during an import aborts it and leaves the store as it was', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, `ogd-cli-stream-${process.pid}-`);
  const home = join(dir, 'store');
  const base = start(['--home', home, 'import', 'base', '-']);
  await writeTar(base.stdin, 2, 1000);
  assert.equal((await base.output).code, 0);
  const lsBefore = (await run(['--home', home, '--json', 'ls'])).stdout;
  const treeBefore = await tree(home);

  const child = start(['--home', home, 'import', 'child', '--parent', 'base', '-']);
  let stopped = false;
  // Feed data and keep the pipe open, as a slow download would.
  const feeding = writeTar(child.stdin, 1000, 4 * MB, () => stopped, false);
  // Wait until the import is really under way: its layer directory exists and data flows.
  const layerDir = join(home, 'overlay', 'child');
  for (let i = 0; i < 200; i++) {
    if (await access(layerDir).then(() => true, () => false)) break;
    await sleep(25);
  }
  await sleep(300);
  child.kill('SIGINT');
  const { code, stderr } = await child.output;
  stopped = true;
  await feeding;
  assert.equal(code, 130, `exit code of an interrupted import (stderr: ${stderr})`);
  assert.match(stderr, /^ogd import: interrupted; nothing was changed \[ABORT_ERR\]\n$/);
  assert.equal((await run(['--home', home, '--json', 'ls'])).stdout, lsBefore, 'ls is unchanged');
  assert.deepEqual(await tree(home), treeBefore, 'the home holds exactly the files it held before');
  assert.equal((await run(['--home', home, 'cleanup'])).code, 0);
  await assertNoMountsUnder(dir);
});

test('Ctrl-C during ogd copy stops it and removes the partial copy', async (t) => {
  const dir = await tempDir(t, `ogd-cli-stream-${process.pid}-`);
  const dst = join(dir, 'copy');
  const child = start(['copy', '/usr', dst]);
  child.stdin.end();
  for (let i = 0; i < 200; i++) {
    if (await access(dst).then(() => true, () => false)) break;
    await sleep(10);
  }
  await sleep(200);
  child.kill('SIGINT');
  const { code, stderr } = await child.output;
  if (code === 0) return t.skip('the copy of /usr finished before the interrupt arrived');
  assert.equal(code, 130, stderr);
  assert.match(stderr, /^ogd copy: interrupted; nothing was changed \[ABORT_ERR\]\n$/);
  await assert.rejects(access(dst), { code: 'ENOENT' }, 'the partial copy is removed');
});
