// A small store with what a user's store holds, for the damaged-store tests: two images
// made by commit (one layer, then two), a container on each with data in its upper,
// the manifest, config and layer blobs the commits kept, and an OCI layout of the
// two-layer image (what `pull` of a known image reads). Made through the library
// (a CLI process per step would cost seconds), then closed, so a test can copy it.
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openStore, type Store } from '../../lib/index.js';

export interface DamageFixture {
  home: string;
  layout: string;
  /** The image layers, bottom first (layers[0] is image "one"'s only layer). */
  layers: string[];
  /** Container id → a file in its upper and that file's content. */
  containers: Record<string, { file: string; content: Buffer }>;
  images: { one: string; two: string };
}

async function fill(s: Store, id: string, files: Record<string, Buffer | string>): Promise<void> {
  const root = await s.mount(id);
  try {
    for (const [name, content] of Object.entries(files)) {
      await mkdir(join(root, name, '..'), { recursive: true });
      await writeFile(join(root, name), content);
    }
  } finally {
    await s.unmount(id);
  }
}

/** Pseudo-random bytes that compress badly (so blobs are not tiny), from a seed. */
export function noise(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

export async function buildDamageFixture(dir: string): Promise<DamageFixture> {
  const home = join(dir, 'home');
  const layout = join(dir, 'layout');
  const s = await openStore(home);
  try {
    await s.create('build1', { kind: 'container' });
    await fill(s, 'build1', { 'etc/os': 'one\n', 'usr/bin/tool': noise(64 * 1024, 1), 'usr/share/doc': 'x'.repeat(3000) });
    const one = await s.commit('build1', 'one');
    await s.create('build2', { kind: 'container', parent: one.topLayer! });
    await fill(s, 'build2', { 'etc/os': 'two\n', 'srv/app.bin': noise(48 * 1024, 2) });
    const two = await s.commit('build2', 'two');
    await s.remove('build1');
    await s.remove('build2');
    const containers: DamageFixture['containers'] = {
      web: { file: 'srv/data.bin', content: noise(40 * 1024, 3) },
      db: { file: 'var/db/table', content: noise(20 * 1024, 4) },
    };
    await s.create('web', { kind: 'container', parent: two.topLayer! });
    await s.create('db', { kind: 'container', parent: one.topLayer! });
    for (const [id, c] of Object.entries(containers)) await fill(s, id, { [c.file]: c.content });
    await s.push('two', `oci:${layout}:two`);
    return { home, layout, layers: two.layers, containers, images: { one: one.id, two: two.id } };
  } finally {
    await s.cleanup();
  }
}

/** A copy of the fixture's home at `dest` (cp -a: owners, modes, xattrs; the store is closed). */
export function copyHome(f: DamageFixture, dest: string): string {
  execFileSync('cp', ['-a', f.home, dest]);
  return dest;
}
