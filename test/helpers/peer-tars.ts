// Real tar writers, each packing a directory into an uncompressed layer tar the way
// it would in the wild: Python's tarfile (PAX and GNU formats), GNU tar (posix and
// gnu formats), and Go's archive/tar through umoci (`repack`) and containers-storage
// (`diff` of a vfs layer). Go's writer is the one most image layers come from: it puts
// names in PAX records and only an ASCII remainder in the header's name field.
import { execFile, execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import { removeTree } from './sandbox.js';

const run = promisify(execFile);

export const peerWriters = ['python-pax', 'python-gnu', 'gnutar-posix', 'gnutar-gnu', 'umoci', 'containers-storage'] as const;
export type PeerWriter = (typeof peerWriters)[number];

const tools: Record<PeerWriter, string> = {
  'python-pax': 'python3',
  'python-gnu': 'python3',
  'gnutar-posix': 'tar',
  'gnutar-gnu': 'tar',
  umoci: 'umoci',
  'containers-storage': 'containers-storage',
};

/** True when `tool` is on PATH. */
export function have(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The reason `writer` cannot run here, or undefined when it can. */
export function missing(writer: PeerWriter): string | undefined {
  const tool = tools[writer];
  return have(tool) ? undefined : `${tool} is not installed (.ci/run installs it)`;
}

// Names are bytes: UTF-8 locale for the tools that convert names through the locale.
const utf8Env = { ...process.env, LC_ALL: 'C.UTF-8' };

const pythonPack = `
import os, sys, tarfile
fmt = {'pax': tarfile.PAX_FORMAT, 'gnu': tarfile.GNU_FORMAT}[sys.argv[1]]
src = os.fsencode(sys.argv[2])
with tarfile.open(sys.argv[3], 'w', format=fmt, encoding='utf-8', errors='surrogateescape') as t:
    for name in sorted(os.listdir(src)):
        t.add(os.fsdecode(os.path.join(src, name)), arcname=os.fsdecode(name))
`;

/** Packs the content of `src` (not `src` itself) into `out` with `writer`; `work` is a scratch dir inside the test's. */
export async function packWith(t: TestContext, writer: PeerWriter, src: string, out: string, work: string): Promise<void> {
  switch (writer) {
    case 'python-pax':
    case 'python-gnu':
      await run('python3', ['-c', pythonPack, writer.slice('python-'.length), src, out], { env: utf8Env });
      return;
    case 'gnutar-posix':
    case 'gnutar-gnu':
      await run('tar', [`--format=${writer.slice('gnutar-'.length)}`, '--sort=name', '--numeric-owner', '-C', src, '-cf', out, '.'], { env: utf8Env });
      return;
    case 'umoci': {
      const layout = join(work, 'oci');
      const bundle = join(work, 'bundle');
      await run('umoci', ['init', '--layout', layout]);
      await run('umoci', ['new', '--image', `${layout}:img`]);
      await run('umoci', ['unpack', '--image', `${layout}:img`, bundle]);
      await run('cp', ['-a', '--', `${src}/.`, join(bundle, 'rootfs')]);
      await run('umoci', ['repack', '--image', `${layout}:img`, bundle]);
      const blobs = await layerBlobs(layout, 'img');
      await pipeline(createReadStream(blobs[blobs.length - 1]!), createGunzip(), createWriteStream(out));
      return;
    }
    case 'containers-storage': {
      // A store of its own, outside the test's dir: shutdown writes lock files again, and
      // would recreate a dir the test's own cleanup has already removed.
      const store = await mkdtemp(join(tmpdir(), 'ogd-cs-'));
      const cs = (...args: string[]) =>
        run('containers-storage', ['--graph', join(store, 'graph'), '--run', join(store, 'run'), '--storage-driver', 'vfs', ...args], { maxBuffer: 1 << 26 }).then((r) => r.stdout.trim());
      t.after(async () => {
        await cs('shutdown', '--force').catch(() => undefined);
        await removeTree(store);
      });
      await cs('create-layer', '--id', 'l');
      const mounted = await cs('mount', 'l');
      await run('cp', ['-a', '--', `${src}/.`, mounted]);
      await cs('diff', '-u', '-f', out, 'l');
      await cs('unmount', 'l');
      return;
    }
  }
}

/** The layer blobs of `image:tag` in an OCI layout, bottom first. */
export async function layerBlobs(layout: string, tag: string): Promise<string[]> {
  const blob = (digest: string): string => join(layout, 'blobs', ...digest.split(':'));
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: Array<{ digest: string; annotations?: Record<string, string> }>;
  };
  const desc = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (desc === undefined) throw new Error(`no ${tag} in ${layout}`);
  const manifestJson = JSON.parse(await readFile(blob(desc.digest), 'utf8')) as { layers: Array<{ digest: string; mediaType: string }> };
  return manifestJson.layers.map((l) => {
    if (!/tar\+gzip$/.test(l.mediaType)) throw new Error(`unexpected layer media type ${l.mediaType}`);
    return blob(l.digest);
  });
}
