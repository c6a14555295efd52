// The native apply (native/apply_tar.cc) against GNU tar on a real Debian rootfs:
// the tar of the rootfs, extracted by `tar -x` and applied by applyTar, gives the
// same tree (manifest.py: type, mode, owner, size, content, link target, device,
// xattrs, mtime, hardlink groups), read as a stream and (OGD_STRESS=1) as a gzip
// LayerFile (read and inflated inside the job), whose size and digest sha256sum checks.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { applyTar } from '../lib/archive/apply.js';
import { LayerFile } from '../lib/archive/layer-file.js';
import { debianRootfs } from './helpers/rootfs.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { compareManifests, manifest } from './helpers/tree.js';

const run = promisify(execFile);

test('a Debian rootfs tar: applyTar makes the same tree as GNU tar -x', async (t) => {
  if (skipUnlessRoot(t)) return;
  const rootfs = await debianRootfs(t);
  if (rootfs === undefined) return;
  const dir = await tempDir(t);
  const tar = join(dir, 'rootfs.tar');
  // Exit status 1 is "a file changed as we read it" (other tests hardlink this tree, which moves ctimes).
  await run('sh', ['-c', 'tar --numeric-owner --xattrs --xattrs-include="*" --sort=name --warning=no-file-changed -C "$1" -cf "$2" . || [ $? -eq 1 ]', 'sh', rootfs, tar]);
  await mkdir(join(dir, 'gnu'));
  await mkdir(join(dir, 'ours'));
  await run('tar', ['-x', '-p', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-f', tar, '-C', join(dir, 'gnu')]);
  const bytes = await applyTar(join(dir, 'ours'), createReadStream(tar, { highWaterMark: 1 << 20 }));
  assert.ok(bytes > 10_000_000, `content bytes applied: ${bytes}`);
  const [gnu, ours] = await Promise.all([manifest(join(dir, 'gnu')), manifest(join(dir, 'ours'))]);
  assert.ok(gnu.size > 1000, `entries: ${gnu.size}`);
  assert.deepEqual(compareManifests(gnu, ours), []);

  // The inflating reader on a real rootfs costs ~20 s more (gzip, apply, manifest): with OGD_STRESS=1, for the test budget.
  if (process.env.OGD_STRESS !== '1') return t.diagnostic('the gzip LayerFile case runs with OGD_STRESS=1');
  const sum = (await run('sha256sum', [tar])).stdout.split(' ')[0];
  const size = (await stat(tar)).size;
  await run('sh', ['-c', 'gzip -1 -c "$1" > "$1.gz"', 'sh', tar]);
  // The plain LayerFile is judged on small tars (archive-apply-file.test.ts); this is the inflating reader on a real one.
  const into = join(dir, 'file-gz');
  await mkdir(into);
  let read: { size: number; digest: string } | undefined;
  assert.equal(await applyTar(into, new LayerFile(`${tar}.gz`), { onTarDigest: (r) => (read = r) }), bytes);
  assert.deepEqual(read, { size, digest: `sha256:${sum}` });
  assert.deepEqual(compareManifests(gnu, await manifest(into)), []);
});
