// Symlinks that point out of the root — placed earlier in the same layer or by a
// lower layer, absolute or relative, in chains, to "/" — then used as a parent, a
// hardlink target, a whiteout's or an opaque dir's location, or replaced. The
// resolver follows them only inside the root (as if it were "/"), the final
// component is replaced rather than followed, so what could escape lands inside
// the root, or the entry is refused.
import assert from 'node:assert/strict';
import { lstat, readFile, readlink, symlink, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { runHostileCase, type HostileCase } from './helpers/hostile.js';
import { skipUnlessRoot } from './helpers/sandbox.js';
import { TarBuilder } from './helpers/tar-builder.js';

const inRoot = (s: { root: string }, p: string): string => join(s.root, p);

const cases: HostileCase[] = [
  {
    name: 'relative symlink climbing out, then a file through it',
    expect: 'contained',
    tar: new TarBuilder().symlink('esc', '../outside').file('esc/sentinel', 'pwned').end(),
    check: async (s) => assert.equal(await readFile(inRoot(s, 'outside/sentinel'), 'utf8'), 'pwned'),
  },
  {
    name: 'symlink to /tmp, then a file through it',
    expect: 'contained',
    tar: (s) => new TarBuilder().symlink('esc', '/tmp').file(`esc/${s.tmpVictim.slice(5)}`, 'pwned').end(),
    check: async (s) => assert.equal(await readFile(inRoot(s, s.tmpVictim), 'utf8'), 'pwned'),
  },
  {
    name: 'absolute symlink to the sandbox outside dir, then overwrite through it',
    expect: 'contained',
    tar: (s) => new TarBuilder().symlink('esc', s.outsideDir).file('esc/sentinel', 'pwned').end(),
    check: async (s) => assert.equal(await readFile(inRoot(s, join(s.outsideDir, 'sentinel')), 'utf8'), 'pwned'),
  },
  {
    name: 'symlink chain ending above the root',
    expect: 'contained',
    tar: new TarBuilder().symlink('a', 'b').symlink('b', 'c').symlink('c', '../../..').file('a/beside', 'pwned').end(),
    check: async (s) => assert.equal(await readFile(inRoot(s, 'beside'), 'utf8'), 'pwned'),
  },
  {
    name: 'symlink to /, then a path through it',
    expect: 'contained',
    tar: (s) => new TarBuilder().symlink('rootlink', '/').file(`rootlink${s.tmpVictim}`, 'pwned').end(),
    check: async (s) => assert.equal(await readFile(inRoot(s, s.tmpVictim), 'utf8'), 'pwned'),
  },
  {
    name: 'lower-layer absolute symlink to the outside dir used as a parent',
    expect: 'contained',
    lower: async (s) => symlink(s.outsideDir, inRoot(s, 'lib')),
    tar: new TarBuilder().file('lib/sentinel', 'pwned').end(),
    check: async (s) => assert.equal(await readFile(inRoot(s, join(s.outsideDir, 'sentinel')), 'utf8'), 'pwned'),
  },
  {
    name: 'lower-layer relative symlink climbing out used as a parent',
    expect: 'contained',
    lower: async (s) => symlink('../..', inRoot(s, 'up')),
    tar: new TarBuilder().file('up/beside', 'pwned').end(),
    check: async (s) => assert.equal(await readFile(inRoot(s, 'beside'), 'utf8'), 'pwned'),
  },
  {
    name: 'lower-layer symlink chain to / used as a parent',
    expect: 'contained',
    lower: async (s) => {
      await symlink('two', inRoot(s, 'one'));
      await symlink('/', inRoot(s, 'two'));
    },
    tar: (s) => new TarBuilder().file(`one${s.outsideFile}`, 'pwned').end(),
    check: async (s) => assert.equal(await readFile(inRoot(s, s.outsideFile), 'utf8'), 'pwned'),
  },
  {
    name: 'file entry over a lower symlink to an outside file replaces the link',
    expect: 'contained',
    lower: async (s) => symlink(s.outsideFile, inRoot(s, 'f')),
    tar: new TarBuilder().file('f', 'pwned', { mode: 0o777 }).end(),
    check: async (s) => {
      assert.ok((await lstat(inRoot(s, 'f'))).isFile());
      assert.equal(await readFile(inRoot(s, 'f'), 'utf8'), 'pwned');
    },
  },
  {
    name: 'directory entry over a lower symlink to an outside dir replaces the link',
    expect: 'contained',
    lower: async (s) => symlink(s.outsideDir, inRoot(s, 'd')),
    tar: new TarBuilder().dir('d/', { mode: 0o777, uid: 1234 }).file('d/sentinel', 'pwned').end(),
    check: async (s) => assert.ok((await lstat(inRoot(s, 'd'))).isDirectory()),
  },
  {
    name: 'symlink entry over a lower symlink to outside is replaced, not followed',
    expect: 'contained',
    lower: async (s) => symlink(s.outsideFile, inRoot(s, 'l')),
    tar: new TarBuilder().symlink('l', '/etc/shadow').end(),
    check: async (s) => assert.equal(await readlink(inRoot(s, 'l')), '/etc/shadow'),
  },
  {
    name: 'hardlink whose target goes through a symlink to outside',
    expect: 'unsafe',
    lower: async (s) => symlink(s.outsideDir, inRoot(s, 'lnk')),
    tar: new TarBuilder().hardlink('h', 'lnk/sentinel').end(),
  },
  {
    name: 'hardlink to a symlink pointing outside links the symlink itself',
    expect: 'contained',
    tar: (s) => new TarBuilder().symlink('s', s.outsideFile).hardlink('h', 's', { mode: 0o777, uid: 4321 }).end(),
    check: async (s) => assert.ok((await lstat(inRoot(s, 'h'))).isSymbolicLink()),
  },
  {
    name: 'whiteout through a lower symlink to the outside dir',
    expect: 'contained',
    lower: async (s) => symlink(s.outsideDir, inRoot(s, 'w')),
    tar: new TarBuilder().whiteout('w/sentinel').end(),
  },
  {
    name: 'whiteout of a lower symlink to outside removes only the link',
    expect: 'contained',
    lower: async (s) => symlink(s.outsideDir, inRoot(s, 'w')),
    tar: new TarBuilder().whiteout('w').end(),
    check: async (s) => assert.rejects(lstat(inRoot(s, 'w')), { code: 'ENOENT' }),
  },
  {
    name: 'opaque whiteout through a lower symlink to the outside dir',
    expect: 'contained',
    lower: async (s) => symlink(s.outsideDir, inRoot(s, 'o')),
    tar: new TarBuilder().opaque('o').end(),
  },
  {
    name: 'opaque whiteout of a dir whose lower content holds a symlink to outside',
    expect: 'contained',
    lower: async (s) => {
      await mkdir(inRoot(s, 'o'));
      await symlink(s.outsideDir, inRoot(s, 'o/link'));
    },
    tar: new TarBuilder().opaque('o').end(),
    check: async (s) => assert.rejects(lstat(inRoot(s, 'o/link')), { code: 'ENOENT' }),
  },
  {
    name: 'symlink placed then replaced by a directory in the same layer',
    expect: 'contained',
    tar: (s) => new TarBuilder().symlink('d', s.outsideDir).dir('d/').file('d/sentinel', 'pwned').end(),
    check: async (s) => assert.equal(await readFile(inRoot(s, 'd/sentinel'), 'utf8'), 'pwned'),
  },
  { name: 'symlink loop used as a parent', expect: 'unsafe', tar: new TarBuilder().symlink('a', 'b').symlink('b', 'a').file('a/x', 'pwned').end() },
];

for (const c of cases) {
  test(`symlink escape: ${c.name}`, async (t) => {
    if (skipUnlessRoot(t)) return;
    await runHostileCase(t, c);
  });
}
