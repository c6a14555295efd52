// A real Debian rootfs for tests, made once by the project's shared script
// (shared/scripts/make-debian-rootfs.sh, beside the primary checkout) and kept in
// OGD_ROOTFS_CACHE (default /var/cache/ogd); tests skip with the reason when it
// cannot be had.
import { existsSync } from 'node:fs';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

const run = promisify(execFile);
/** The repository root: this file runs as dist/test/helpers/rootfs.js. */
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const rootfsCache = process.env.OGD_ROOTFS_CACHE ?? '/var/cache/ogd';

/**
 * Where the script may be: the shared folder sits beside the primary checkout, which
 * for a git worktree elsewhere is found through git's common dir, not through this
 * checkout's own parent.
 */
function scriptCandidates(): string[] {
  const roots = [repo];
  try {
    const common = execFileSync('git', ['rev-parse', '--path-format=absolute', '--git-common-dir'], { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    roots.unshift(dirname(common));
  } catch {
    // not a git checkout (an unpacked tarball): only the repository's own parent
  }
  return [...new Set(roots.map((root) => join(root, '..', 'shared', 'scripts', 'make-debian-rootfs.sh')))];
}

/** Path of a Debian rootfs (minbase: ~6.8k entries; big: ~71k), or undefined after t.skip(reason). */
export async function debianRootfs(t: TestContext, kind: 'minbase' | 'big' = 'minbase'): Promise<string | undefined> {
  const dir = join(rootfsCache, `debian-${kind}`);
  if (existsSync(join(dir, 'etc', 'debian_version'))) return dir;
  if (process.getuid?.() !== 0) {
    t.skip('a Debian rootfs needs root to make');
    return undefined;
  }
  const candidates = scriptCandidates();
  const script = candidates.find((c) => existsSync(c));
  if (script === undefined) {
    t.skip(`no Debian rootfs in ${dir} and no ${candidates.join(' or ')} to make one`);
    return undefined;
  }
  try {
    await run('bash', [script, dir, kind], { timeout: 15 * 60_000 });
  } catch (err) {
    t.skip(`could not make a Debian rootfs: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    return undefined;
  }
  return dir;
}
