// Layers made by a real peer, applied here, give the tree that peer makes itself.
// umoci (Debian's package) builds an OCI image of two layers — the second deleting a
// file and a directory (".wh." whiteouts) and replacing content — and unpacks it;
// we apply its two layer blobs in order and compare entry by entry.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { chmod, chown, link, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import { applyTar } from '../lib/archive/apply.js';
import * as native from '../lib/native.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { compareManifests, manifest } from './helpers/tree.js';
import { layerBlobs, missing } from './helpers/peer-tars.js';

const run = promisify(execFile);

test('layers made by umoci apply to the tree umoci unpacks', async (t) => {
  if (skipUnlessRoot(t)) return;
  const reason = missing('umoci');
  if (reason !== undefined) {
    t.skip(reason);
    return;
  }
  const dir = await tempDir(t);
  const layout = join(dir, 'oci');
  const bundle = join(dir, 'bundle');
  const rootfs = join(bundle, 'rootfs');
  await run('umoci', ['init', '--layout', layout]);
  await run('umoci', ['new', '--image', `${layout}:img`]);
  await run('umoci', ['unpack', '--image', `${layout}:img`, bundle]);

  // Layer 1: every entry type umoci writes.
  await mkdir(join(rootfs, 'usr/bin'), { recursive: true });
  await mkdir(join(rootfs, 'etc/conf.d'), { recursive: true });
  await mkdir(join(rootfs, 'var/cache/old'), { recursive: true });
  await writeFile(join(rootfs, 'usr/bin/tool'), '#!/bin/sh\necho tool\n');
  await chmod(join(rootfs, 'usr/bin/tool'), 0o4755);
  await link(join(rootfs, 'usr/bin/tool'), join(rootfs, 'usr/bin/tool-alias'));
  await symlink('usr/bin', join(rootfs, 'bin'));
  await writeFile(join(rootfs, 'etc/conf.d/a'), 'a=1\n');
  await writeFile(join(rootfs, 'etc/conf.d/b'), 'b=2\n');
  await chown(join(rootfs, 'etc/conf.d/b'), 1000, 1000);
  await writeFile(join(rootfs, 'var/cache/old/blob'), Buffer.alloc(70_000, 7));
  await native.setXattr(join(rootfs, 'etc/conf.d/a'), 'user.note', Buffer.from('hello'));
  await native.mknod(join(rootfs, 'etc/fifo'), 0o10640, 0, 0);
  await mkdir(join(rootfs, 'tmp'));
  await chmod(join(rootfs, 'tmp'), 0o1777);
  await run('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:img`, bundle]);

  // Layer 2: deletions (whiteouts), a replaced file, a file turned into a directory.
  await rm(join(rootfs, 'etc/conf.d/b'));
  await rm(join(rootfs, 'var/cache/old'), { recursive: true });
  await writeFile(join(rootfs, 'etc/conf.d/a'), 'a=2\n');
  await rm(join(rootfs, 'etc/fifo'));
  await mkdir(join(rootfs, 'etc/fifo'));
  await writeFile(join(rootfs, 'etc/fifo/now-a-dir'), 'x');
  await run('umoci', ['repack', '--image', `${layout}:img`, bundle]);

  const blobs = await layerBlobs(layout, 'img');
  assert.ok(blobs.length >= 2, `umoci made ${blobs.length} layers`);
  const ours = join(dir, 'ours');
  await mkdir(ours);
  for (const blob of blobs) await applyTar(ours, createReadStream(blob).pipe(createGunzip()));

  const theirs = join(dir, 'theirs');
  await run('umoci', ['unpack', '--image', `${layout}:img`, theirs]);
  const [want, got] = await Promise.all([manifest(join(theirs, 'rootfs')), manifest(ours)]);
  const diffs = compareManifests(want, got, { rootFields: ['mtime', 'mode'] });
  assert.deepEqual(diffs, []);
});
