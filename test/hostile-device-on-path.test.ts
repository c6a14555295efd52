// Something that is not a directory placed where a later entry needs a parent
// directory: a device node (also one replacing a directory), a fifo, a file, a
// symlink to a device. The entry is refused; nothing is created through the node.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { runHostileCase, type HostileCase } from './helpers/hostile.js';
import { skipUnlessRoot } from './helpers/sandbox.js';
import { TarBuilder } from './helpers/tar-builder.js';

const cases: HostileCase[] = [
  { name: 'char device as a parent', expect: 'unsafe', tar: new TarBuilder().device('dev', 'char', 1, 3).file('dev/x', 'pwned').end() },
  {
    name: 'char device replacing a lower directory, then a child of it',
    expect: 'unsafe',
    lower: async (s) => {
      await mkdir(join(s.root, 'd'));
      await writeFile(join(s.root, 'd', 'x'), 'lower');
    },
    tar: new TarBuilder().device('d', 'char', 1, 3).file('d/x', 'pwned').end(),
  },
  { name: 'block device replacing a directory of the same layer', expect: 'unsafe', tar: new TarBuilder().dir('d/').device('d', 'block', 7, 0).file('d/x', 'pwned').end() },
  { name: 'fifo as a parent', expect: 'unsafe', tar: new TarBuilder().fifo('f').file('f/x', 'pwned').end() },
  { name: 'regular file as a parent', expect: 'unsafe', tar: new TarBuilder().file('f', 'data').dir('f/sub/').end() },
  { name: 'symlink to a device as a parent', expect: 'unsafe', tar: new TarBuilder().device('null', 'char', 1, 3).symlink('s', 'null').file('s/x', 'pwned').end() },
];

for (const c of cases) {
  test(`device on path: ${c.name}`, async (t) => {
    if (skipUnlessRoot(t)) return;
    await runHostileCase(t, c);
  });
}
