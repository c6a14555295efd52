// Reference images made by a real peer, umoci, in an OCI layout: "base" (two layers:
// every entry type umoci writes, then deletions and replacements) and "app" (base plus
// a third layer), so app shares base's layers. Optionally "debian": a Debian rootfs
// split into two layers.
import { execFile } from 'node:child_process';
import { chmod, chown, link, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as native from '../../lib/native.js';

const run = promisify(execFile);

export async function umoci(...args: string[]): Promise<void> {
  await run('umoci', args, { maxBuffer: 1 << 26 });
}

/** Builds the layout at `layout` (bundles under `work`); returns it. */
export async function buildTestImages(layout: string, work: string): Promise<string> {
  const bundle = join(work, 'bundle');
  const rootfs = join(bundle, 'rootfs');
  await umoci('init', '--layout', layout);
  await umoci('new', '--image', `${layout}:base`);
  await umoci('unpack', '--image', `${layout}:base`, bundle);

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
  await writeFile(join(rootfs, 'var/cache/old/blob'), Buffer.alloc(300_000, 7));
  // Incompressible content, so a layer's bytes on the wire are not tiny.
  await writeFile(join(rootfs, 'usr/bin/random.bin'), Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 2654435761) >>> 24)));
  await native.setXattr(join(rootfs, 'etc/conf.d/a'), 'user.note', Buffer.from('hello'));
  await native.mknod(join(rootfs, 'etc/fifo'), 0o10640, 0, 0);
  await mkdir(join(rootfs, 'tmp'));
  await chmod(join(rootfs, 'tmp'), 0o1777);
  await umoci('repack', '--refresh-bundle', '--image', `${layout}:base`, bundle);

  await rm(join(rootfs, 'etc/conf.d/b'));
  await rm(join(rootfs, 'var/cache/old'), { recursive: true });
  await writeFile(join(rootfs, 'etc/conf.d/a'), 'a=2\n');
  await rm(join(rootfs, 'etc/fifo'));
  await mkdir(join(rootfs, 'etc/fifo'));
  await writeFile(join(rootfs, 'etc/fifo/now-a-dir'), 'x');
  await umoci('repack', '--refresh-bundle', '--image', `${layout}:base`, bundle);

  await umoci('tag', '--image', `${layout}:base`, 'app');
  await writeFile(join(rootfs, 'app.txt'), 'the app\n');
  await mkdir(join(rootfs, 'srv/www'), { recursive: true });
  await writeFile(join(rootfs, 'srv/www/index.html'), Buffer.alloc(50_000, 0x41));
  await rm(join(rootfs, 'usr/bin/tool-alias'));
  await umoci('repack', '--image', `${layout}:app`, bundle);
  await rm(bundle, { recursive: true });
  return layout;
}

/** Adds image "debian" to the layout: `rootfs` copied in as one layer, then a second layer changing it. */
export async function addDebianImage(layout: string, work: string, debian: string): Promise<void> {
  const bundle = join(work, 'debian-bundle');
  const rootfs = join(bundle, 'rootfs');
  await umoci('new', '--image', `${layout}:debian`);
  await umoci('unpack', '--image', `${layout}:debian`, bundle);
  await run('cp', ['-a', '--', `${debian}/.`, rootfs]);
  await umoci('repack', '--refresh-bundle', '--image', `${layout}:debian`, bundle);
  await rm(join(rootfs, 'usr/share/doc'), { recursive: true, force: true });
  await writeFile(join(rootfs, 'etc/motd'), `${await readFile(join(rootfs, 'etc/debian_version'), 'utf8')}changed\n`);
  await umoci('repack', '--image', `${layout}:debian`, bundle);
  await rm(bundle, { recursive: true });
}

/** umoci's own unpack of an image: the oracle tree. */
export async function umociUnpack(image: string, bundle: string): Promise<string> {
  await umoci('unpack', '--image', image, bundle);
  return join(bundle, 'rootfs');
}
