// The naive diff (lib/drivers/naive-diff.ts) against the smallest driver there is: a
// layer is a plain directory, get() returns it and put() does nothing (a vfs-like
// driver). Nothing overlay-specific is needed to get a layer's changes, tar and size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, open, readFile, utimes, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import tar from 'tar-stream';
import { changes, diff, diffSize, writeDiff, type LayerTrees } from '../lib/drivers/naive-diff.js';
import { LayerNotFoundError } from '../lib/errors.js';
import { tempDir } from './helpers/sandbox.js';


function dirDriver(home: string, layers: string[]): LayerTrees & { taken: number } {
  const d = {
    uidMaps: [],
    gidMaps: [],
    taken: 0,
    async get(id: string) {
      if (!layers.includes(id)) throw new LayerNotFoundError(id);
      d.taken++;
      return join(home, id);
    },
    async put() {
      d.taken--;
    },
  };
  return d;
}

async function tarNames(stream: NodeJS.ReadableStream): Promise<string[]> {
  const names: string[] = [];
  const extract = tar.extract();
  extract.on('entry', (h, s, next) => {
    names.push(h.name);
    s.resume();
    s.on('end', next);
  });
  const done = new Promise<void>((resolve, reject) => (extract.on('finish', () => resolve()), extract.on('error', reject)));
  stream.pipe(extract);
  await done;
  return names;
}

test('changes, diff, writeDiff and diffSize of a directory layer against its parent, through get/put only', async (t) => {
  const home = await tempDir(t);
  const old = new Date('2020-01-01T00:00:00Z');
  for (const id of ['p', 'c']) {
    await mkdir(join(home, id, 'etc'), { recursive: true });
    await writeFile(join(home, id, 'etc', 'keep'), 'same');
    await utimes(join(home, id, 'etc', 'keep'), old, old);
    await utimes(join(home, id, 'etc'), old, old);
  }
  await writeFile(join(home, 'p', 'gone'), 'x');
  await writeFile(join(home, 'p', 'edit'), 'old');
  await writeFile(join(home, 'c', 'edit'), 'new content');
  await writeFile(join(home, 'c', 'added'), 'hello');
  const d = dirDriver(home, ['p', 'c']);

  const list = (await changes(d, 'c', 'p')).map((c) => `${c.kind} ${c.path}`).sort();
  assert.deepEqual(list, ['A /added', 'C /edit', 'D /gone']);
  assert.equal(await diffSize(d, 'c', 'p'), 'new content'.length + 'hello'.length);
  const names = await tarNames(await diff(d, 'c', 'p'));
  assert.deepEqual([...names].sort(), ['.wh.gone', 'added', 'edit']);
  const file = join(home, 'out.tar');
  const fh = await open(file, 'w');
  try {
    await writeDiff(d, 'c', undefined, fh.fd);
  } finally {
    await fh.close();
  }
  const whole = await tarNames(Readable.from([await readFile(file)]));
  assert.ok(whole.includes('etc/keep') && whole.includes('added') && !whole.includes('.wh.gone'), 'no parent: the whole tree');
  await new Promise((r) => setImmediate(r)); // the diff stream's close gives its tree back
  assert.equal(d.taken, 0, 'every get was put');
  await assert.rejects(changes(d, 'c', 'missing'), LayerNotFoundError);
  assert.equal(d.taken, 0, 'a failed diff gives back what it took');
});
