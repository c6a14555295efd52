// The arm64 side of the pack test: the linux-arm64 prebuild cross-compiled once per
// state of the native sources (kept under build/, where `node-gyp rebuild` after a C++
// change wipes it anyway), and an arm64 Node run under qemu-user from a private sysroot
// of Debian's arm64 packages (scripts/arm64-node-sysroot.sh). Each answers a reason
// instead when this machine cannot have it.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type Found = { path: string } | { reason: string };

async function onPath(command: string): Promise<string | undefined> {
  return run('sh', ['-c', `command -v ${command}`]).then(
    ({ stdout }) => stdout.trim(),
    () => undefined,
  );
}

function firstLine(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  const lines = `${e.stderr ?? ''}\n${e.message ?? String(err)}`.split('\n').filter((l) => l.trim() !== '');
  return lines.at(-1) ?? 'failed';
}

/** What the arm64 binary is made from: its sources, the build recipe and node-addon-api's version. */
async function sourceKey(repo: string): Promise<string> {
  const hash = createHash('sha256');
  const native = (await readdir(join(repo, 'native'))).filter((f) => /\.(cc|h)$/.test(f)).sort();
  for (const file of [...native.map((f) => join('native', f)), 'binding.gyp', 'scripts/prebuildify.sh', 'node_modules/node-addon-api/package.json']) {
    hash.update(file).update('\0').update(await readFile(join(repo, file))).update('\0');
  }
  return hash.digest('hex');
}

/**
 * The linux-arm64 prebuild `npm run prebuildify -- --arch arm64` makes from the current
 * sources, cross-compiled with g++-aarch64-linux-gnu into build/cross-arm64/ the first time
 * (about 45 s of CPU) and reused while the sources are unchanged.
 */
export async function crossBuiltArm64Prebuild(repo: string): Promise<Found> {
  const cache = join(repo, 'build', 'cross-arm64');
  const binary = join(cache, 'prebuilds', 'linux-arm64', 'overlay-graphdriver.glibc.node');
  const key = await sourceKey(repo);
  const cached = await readFile(join(cache, 'KEY'), 'utf8').catch(() => '');
  if (cached === key && (await access(binary).then(() => true, () => false))) return { path: binary };
  if (process.arch !== 'arm64' && (await onPath('aarch64-linux-gnu-g++')) === undefined) {
    return { reason: 'no arm64 cross compiler (apt-get install g++-aarch64-linux-gnu; .ci/run does)' };
  }
  const staging = `${cache}.${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    await run('sh', [join(repo, 'scripts', 'prebuildify.sh'), '--arch', 'arm64'], {
      cwd: repo,
      env: { ...process.env, OGD_PREBUILDS_OUT: staging },
      timeout: 600_000,
      maxBuffer: 64 << 20,
    });
    await writeFile(join(staging, 'KEY'), key);
    await rm(cache, { recursive: true, force: true });
    await rename(staging, cache);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
  return { path: binary };
}

export interface Arm64Node {
  /** Runs `node ARGS` as an arm64 process (under qemu-user on another CPU). */
  command: string;
  prefix: string[];
}

/**
 * An arm64 Node: this machine's own on arm64, else Debian's arm64 Node from the private
 * sysroot (made on first use: a download of about 30 MB) under qemu-aarch64.
 */
export async function arm64Node(repo: string): Promise<Arm64Node | { reason: string }> {
  if (process.arch === 'arm64') return { command: process.execPath, prefix: [] };
  const qemu = (await onPath('qemu-aarch64-static')) ?? (await onPath('qemu-aarch64'));
  if (qemu === undefined) return { reason: 'no qemu-user for arm64 (apt-get install qemu-user-static; .ci/run does)' };
  let sysroot: string;
  try {
    const { stdout } = await run('sh', [join(repo, 'scripts', 'arm64-node-sysroot.sh')], { timeout: 300_000, maxBuffer: 16 << 20 });
    sysroot = stdout.trim().split('\n').at(-1)!;
  } catch (err) {
    return { reason: `no arm64 Node sysroot (scripts/arm64-node-sysroot.sh: ${firstLine(err)})` };
  }
  return { command: qemu, prefix: ['-L', sysroot, join(sysroot, 'usr', 'bin', 'node')] };
}
