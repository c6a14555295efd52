// `ogd demo`: the whole job once, for someone with nothing prepared. In a fresh temp
// home it imports three generated layers (a base; a child that adds, changes and
// deletes files; a grandchild that makes a directory opaque), puts a container layer
// on top, mounts it, writes through it, shows the changes and the diff, and cleans up,
// timing each step. It checks what it sees through the mount, so a broken overlay
// shows up here as a failure rather than as a pretty but wrong transcript.
import { mkdtemp, readFile, readdir, rm, unlink, writeFile, mkdir, access, open, symlink, chmod, utimes, lstat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { IncompatibleFsError, LayerFile, openStore } from '../../index.js';
import { packTree } from '../../native.js';
import type { Store } from '../../index.js';
import type { Command } from '../command.js';
import { formatDuration } from '../progress.js';

type Entry = { name: string; type?: 'file' | 'directory' | 'symlink'; mode?: number; body?: string; linkname?: string };

const MTIME = new Date('2024-01-01T00:00:00Z');

const dir = (name: string): Entry => ({ name, type: 'directory', mode: 0o755 });
const file = (name: string, body: string, mode = 0o644): Entry => ({ name, body, mode });

const baseLayer: Entry[] = [
  dir('bin/'),
  file('bin/hello', '#!/bin/sh\necho hello from the base layer\n', 0o755),
  { name: 'bin/hi', type: 'symlink', linkname: 'hello' },
  dir('etc/'),
  file('etc/os-release', 'NAME="ogd demo"\nVERSION=1\n'),
  file('etc/hostname', 'demo\n'),
  dir('usr/'),
  dir('usr/share/'),
  dir('usr/share/doc/'),
  dir('usr/share/doc/demo/'),
  file('usr/share/doc/demo/README', 'The base layer ships this file; the child layer deletes it.\n'),
  dir('opt/'),
  dir('opt/app/'),
  file('opt/app/old-plugin.js', 'module.exports = "old";\n'),
  file('opt/app/config.json', '{"version":1}\n'),
];

const childLayer: Entry[] = [
  dir('etc/'),
  file('etc/os-release', 'NAME="ogd demo"\nVERSION=2\n'),
  file('etc/app.conf', 'listen=8080\n'),
  dir('usr/share/doc/demo/'),
  file('usr/share/doc/demo/.wh.README', ''),
];

const grandchildLayer: Entry[] = [
  dir('opt/app/'),
  file('opt/app/.wh..wh..opq', ''),
  file('opt/app/main.js', 'console.log("v2");\n'),
];

/**
 * The layer tar of `entries`, written to `scratch`/NAME.tar by the library's own packer
 * (packTree) from a tree made of them in `scratch`/NAME: whiteouts are the plain empty
 * files the OCI format names .wh.*, which the apply then reads as deletions.
 */
async function layerTar(scratch: string, name: string, entries: Entry[]): Promise<LayerFile> {
  const tree = join(scratch, name);
  await mkdir(tree, { recursive: true });
  for (const e of entries) {
    const path = join(tree, e.name);
    await mkdir(dirname(path), { recursive: true });
    if (e.type === 'directory') await mkdir(path, { recursive: true });
    else if (e.type === 'symlink') await symlink(e.linkname ?? '', path);
    else await writeFile(path, e.body ?? '');
    if (e.type !== 'symlink') await chmod(path, e.mode ?? 0o644);
  }
  for (const e of entries) if (e.type !== 'symlink') await utimes(join(tree, e.name), MTIME, MTIME);
  const file = join(scratch, `${name}.tar`);
  const out = await open(file, 'wx');
  try {
    await packTree(tree, out.fd);
  } finally {
    await out.close();
  }
  return new LayerFile(file);
}

interface Step {
  step: string;
  ms: number;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`demo check failed: ${what}`);
}

export const demo: Command = {
  name: 'demo',
  usage: 'demo',
  summary: 'build a 3-layer image and a container in a temp store, show changes and diff, clean up',
  example: 'sudo ogd demo',
  options: {},
  positionals: [0, 0],
  async run(ctx) {
    const steps: Step[] = [];
    const started = performance.now();
    const step = async <T>(work: () => Promise<T>, describe: (value: T) => string): Promise<T> => {
      const t0 = performance.now();
      const value = await work();
      const ms = performance.now() - t0;
      const text = describe(value);
      steps.push({ step: text, ms: Math.round(ms * 10) / 10 });
      ctx.say(`  ${String(steps.length).padStart(2)}. ${formatDuration(ms / 1000).padStart(8)}  ${text}`);
      return value;
    };

    let home = await mkdtemp(join(tmpdir(), 'ogd-demo-'));
    ctx.say(`ogd demo: a layered image and a container on overlayfs, in ${home}`);
    let store: Store | undefined;
    let fallback = false;
    const layers: string[] = [];
    try {
      store = await step(
        async () => {
          try {
            return await openStore(home, { driver: ctx.driverName, ...(ctx.durable ? {} : { durable: false }) });
          } catch (err) {
            // /tmp on btrfs, overlay, zfs…: the demo moves to /dev/shm (a tmpfs) instead.
            if (!(err instanceof IncompatibleFsError)) throw err;
            await rm(home, { recursive: true, force: true });
            home = await mkdtemp(join('/dev/shm', 'ogd-demo-'));
            fallback = true;
            return openStore(home, { driver: ctx.driverName, ...(ctx.durable ? {} : { durable: false }) });
          }
        },
        (s) => `open a fresh store (${s.driverName} on ${Object.fromEntries(s.status())['Backing Filesystem'] ?? 'unknown fs'}${fallback ? ', /dev/shm' : ''})`,
      );
      const d = store;
      const opts = { signal: ctx.signal };
      const scratch = join(home, 'demo-layers');
      await step(
        async () => {
          layers.push('base');
          return (await d.importLayer('base', await layerTar(scratch, 'base', baseLayer), opts)).diffSize ?? 0;
        },
        (bytes) => `import "base": ${baseLayer.length} entries, ${bytes} bytes (binaries, /etc, docs, /opt/app)`,
      );
      await step(
        async () => {
          layers.push('child');
          return d.importLayer('child', await layerTar(scratch, 'child', childLayer), { ...opts, parent: 'base' });
        },
        () => 'import "child" on base: adds /etc/app.conf, changes os-release, deletes README',
      );
      await step(
        async () => {
          layers.push('grandchild');
          return d.importLayer('grandchild', await layerTar(scratch, 'grandchild', grandchildLayer), { ...opts, parent: 'child' });
        },
        () => 'import "grandchild" on child: /opt/app made opaque, adds /opt/app/main.js',
      );
      await step(
        async () => {
          await d.create('web', { parent: 'grandchild', kind: 'container' });
          layers.push('web');
        },
        () => 'create container layer "web" on grandchild',
      );
      const merged = await step(
        async () => {
          const path = await d.mount('web');
          const osRelease = await readFile(join(path, 'etc/os-release'), 'utf8');
          check(osRelease.includes('VERSION=2'), 'the child layer changed /etc/os-release');
          check(!(await exists(join(path, 'usr/share/doc/demo/README'))), "the child layer's whiteout hides README");
          const app = (await readdir(join(path, 'opt/app'))).sort();
          check(app.join(',') === 'main.js', `the opaque /opt/app holds only main.js, not ${app.join(',')}`);
          return { path, app };
        },
        ({ app }) => `mount "web": sees VERSION=2, no README, /opt/app = [${app.join(', ')}]`,
      );
      await step(
        async () => {
          await mkdir(join(merged.path, 'root'), { recursive: true });
          await writeFile(join(merged.path, 'root/notes.txt'), 'written through the overlay\n');
          await writeFile(join(merged.path, 'etc/app.conf'), 'listen=9090\n');
          await unlink(join(merged.path, 'bin/hello'));
        },
        () => 'write through the mount: add /root/notes.txt, change app.conf, delete /bin/hello',
      );
      const changed = await step(
        () => d.changes('web', opts),
        (list) => `changes of "web": ${list.map((c) => `${c.kind} ${c.path}`).join(', ')}`,
      );
      check(
        changed.some((c) => c.kind === 'D' && c.path === '/bin/hello') && changed.some((c) => c.path === '/root/notes.txt'),
        'changes lists the deleted /bin/hello and the new /root/notes.txt',
      );
      await step(
        async () => {
          const file = join(scratch, 'web.tar');
          const out = await open(file, 'wx');
          try {
            await d.writeDiff('web', out.fd, opts);
          } finally {
            await out.close();
          }
          return (await lstat(file)).size;
        },
        (bytes) => `diff of "web": a tar of ${bytes} bytes (those changes; a whiteout for /bin/hello)`,
      );
      await step(
        async () => {
          const r = await d.unmount('web');
          check(!r.mounted && (await d.layer('web')).mountCount === 0, 'unmount released web');
        },
        () => 'unmount "web"',
      );
      await step(
        async () => {
          for (const id of layers.reverse()) await d.remove(id);
          layers.length = 0;
          await d.cleanup();
          store = undefined;
        },
        () => `remove the 4 layers and release the store`,
      );
    } finally {
      await releaseHome(home, store);
    }
    const total = performance.now() - started;
    ctx.result({ home, steps, ms: Math.round(total) });
    ctx.say(`done in ${formatDuration(total / 1000)}; ${home} removed. Next: "ogd --help", or README.md.`);
  },
};

// Whatever happened above, leave no mount and no directory behind.
async function releaseHome(home: string, store: Store | undefined): Promise<void> {
  await store?.cleanup({ force: true }).catch(() => {});
  await rm(home, { recursive: true, force: true });
}
