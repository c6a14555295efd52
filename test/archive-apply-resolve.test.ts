// The resolver layer apply stands on: paths resolved inside a root as if it were
// "/". The kernel's openat2(RESOLVE_IN_ROOT) and the userspace walk that replaces
// it where openat2 is missing must agree on every path of a tree built to mislead
// them (absolute and relative symlinks out of the root, chains, loops, "..", files
// and devices on the way), and both must always land inside the root.
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import * as native from '../lib/native.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';

type Outcome = { path: string } | { code: string };

async function outcome(p: Promise<string | Buffer>): Promise<Outcome> {
  try {
    return { path: String(await p) };
  } catch (err) {
    return { code: (err as { code: string }).code };
  }
}

test('the fallback walk resolves exactly as openat2 RESOLVE_IN_ROOT does, and never leaves the root', async (t) => {
  if (skipUnlessRoot(t)) return;
  const base = await tempDir(t);
  const root = join(base, 'root');
  await mkdir(join(root, 'usr/bin'), { recursive: true });
  await mkdir(join(root, 'usr/lib'), { recursive: true });
  await writeFile(join(root, 'usr/bin/ls'), '');
  await symlink('usr/bin', join(root, 'bin'));
  await symlink('/usr/lib', join(root, 'lib'));
  await symlink('../../..', join(root, 'usr/up'));
  await symlink('/', join(root, 'slash'));
  await symlink(base, join(root, 'host'));
  await symlink('chain2', join(root, 'chain1'));
  await symlink('chain3', join(root, 'chain2'));
  await symlink('/usr/../usr/bin/../lib', join(root, 'chain3'));
  await symlink('loop2', join(root, 'loop1'));
  await symlink('loop1', join(root, 'loop2'));
  await symlink('missing/target', join(root, 'dangling'));
  await symlink('usr/bin/ls', join(root, 'lsfile'));
  await native.mknod(join(root, 'null'), 0o20666, 1, 3);

  const paths = [
    '', '.', '..', '../..', 'usr', 'usr/bin/ls', 'bin', 'bin/ls', 'bin/../lib', 'lib', 'lib/../bin', 'usr/up', 'usr/up/usr',
    'slash', 'slash/..', 'slash/usr/bin', 'host', 'host/root', 'chain1', 'chain1/..', 'loop1', 'loop1/x', 'dangling',
    'dangling/x', 'lsfile', 'lsfile/x', 'null', 'null/x', 'missing', 'usr/bin/ls/x', '/usr//bin/./ls', '../../../etc/passwd',
  ];
  for (const p of paths) {
    for (const followLast of [false, true]) {
      const kernel = await outcome(native.resolveInRoot(root, p, followLast));
      const walk = await outcome(native.resolveInRootByWalk(root, p, followLast));
      assert.deepEqual(walk, kernel, `${JSON.stringify(p)} followLast=${followLast}`);
      if ('path' in walk) assert.ok(walk.path === root || walk.path.startsWith(root + '/'), `${p} -> ${walk.path}`);
    }
  }
});
