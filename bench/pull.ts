// Pulling a real image from a registry: `ogd pull` against the path podman takes,
// `skopeo copy docker://… containers-storage:[overlay@ROOT+RUNROOT]…` (containers/image
// into containers/storage's overlay driver). The image is the Debian big rootfs
// (OGD_ROOTFS_CACHE/debian-big, ~71k entries, 1.5 GB) split into 3 gzip layers
// (everything but /usr/lib and /usr/share; /usr/lib; /usr/share), made once with GNU
// tar + zlib level 6 into an OCI layout kept in OGD_ROOTFS_CACHE/bench-pull-layout, and
// pushed once per run of this part (skopeo copy) to Debian's docker-registry on
// 127.0.0.1. Each timed pull is a fresh process into a fresh store (cold blob cache),
// the two contenders alternated A B A B; wall time and the process's CPU time
// (/usr/bin/time: user + sys of it and its children) are kept, medians reported.
//
// Where ogd's time goes (`breakdown`, one process, each phase alone, sequential):
// download (the three blobs into a blob cache, digests checked), decompress (gunzip
// of the cached blobs to nowhere), apply (the uncompressed tars imported into a store).
// A real pull overlaps them (a layer is applied while its blob downloads), so its
// wall time is below their sum.
//   node dist/bench/pull.js [--runs N]
import { execFile, spawn } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createGunzip, createGzip } from 'node:zlib';
import { median } from './lib.js';

const sh = promisify(execFile);
const self = fileURLToPath(import.meta.url);
const cacheRoot = process.env.OGD_ROOTFS_CACHE ?? '/var/cache/ogd';
const source = join(cacheRoot, 'debian-big');
const layout = join(cacheRoot, 'bench-pull-layout');
const scratch = join(cacheRoot, 'bench-pull');
const ogdMain = join(self, '..', '..', 'lib', 'cli', 'main.js');
const TAG = 'big';
const DEFAULT_RUNS = 3;

export interface PullRow {
  comparison: string;
  contender: string;
  runs: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** Median CPU seconds (user + sys, the process and its children). */
  cpuS: number;
  ratioToFirst: number;
}

interface Timed {
  ms: number;
  cpuS: number;
}

export async function run(opts: { runs?: number; log?: (line: string) => void } = {}): Promise<PullRow[]> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const runs = opts.runs ?? DEFAULT_RUNS;
  if (process.getuid?.() !== 0) throw new Error('the pull benchmark mounts overlays: run it as root');
  for (const tool of ['skopeo', 'docker-registry', 'tar']) {
    if ((await sh('sh', ['-c', `command -v ${tool}`]).catch(() => undefined)) === undefined) throw new Error(`${tool} is not installed (.ci/run installs it)`);
  }
  if (!existsSync(join(source, 'etc', 'debian_version'))) throw new Error(`no Debian big rootfs at ${source} (make-debian-rootfs.sh DIR big)`);
  await cleanupScratch();
  await mkdir(scratch, { recursive: true });
  const layers = await ensureLayout(log);
  const registry = await startRegistry(join(scratch, 'registry'));
  try {
    const ref = `${registry.host}/bench/debian:${TAG}`;
    log(`pull: pushing the image to ${registry.host} (skopeo copy)…`);
    await sh('skopeo', ['--insecure-policy', 'copy', '-q', '--dest-tls-verify=false', `oci:${layout}:${TAG}`, `docker://${ref}`], { maxBuffer: 1 << 24 });
    const compressed = layers.reduce((n, l) => n + l.size, 0);
    const name = `pull, Debian big rootfs (3 gzip layers, ${(compressed / 1e6).toFixed(0)} MB) from a loopback registry`;
    const ogd: Timed[] = [];
    const skopeo: Timed[] = [];
    for (let i = 0; i < runs; i++) {
      const o = await timed('node', [ogdMain, '--home', join(scratch, `ogd-${i}`), 'pull', `docker://${ref}`, '--tls-verify=false']);
      await removeOgd(join(scratch, `ogd-${i}`));
      ogd.push(o);
      log(`  ${name} · ogd pull · run ${i + 1}: ${o.ms.toFixed(0)} ms (CPU ${o.cpuS.toFixed(1)} s)`);
      const cs = join(scratch, `cs-${i}`);
      const s = await timed('skopeo', ['--insecure-policy', 'copy', '-q', '--src-tls-verify=false', `docker://${ref}`, `containers-storage:[overlay@${cs}/root+${cs}/run]debian:${TAG}`]);
      await removeContainersStorage(cs);
      skopeo.push(s);
      log(`  ${name} · skopeo copy → containers-storage · run ${i + 1}: ${s.ms.toFixed(0)} ms (CPU ${s.cpuS.toFixed(1)} s)`);
    }
    log('pull: where ogd\'s time goes (each phase alone)…');
    const b = JSON.parse((await sh('node', [self, '--worker', 'breakdown', registry.host, join(scratch, 'breakdown')], { maxBuffer: 1 << 20 })).stdout) as Record<string, number>;
    log(`  download ${b.downloadMs!.toFixed(0)} ms · decompress ${b.decompressMs!.toFixed(0)} ms · apply ${b.applyMs!.toFixed(0)} ms (sum ${(b.downloadMs! + b.decompressMs! + b.applyMs!).toFixed(0)} ms)`);
    const row = (contender: string, t: Timed[], first: number): PullRow => {
      const ms = t.map((x) => x.ms);
      return { comparison: name, contender, runs: t.length, medianMs: median(ms), minMs: Math.min(...ms), maxMs: Math.max(...ms), cpuS: median(t.map((x) => x.cpuS)), ratioToFirst: median(ms) / first };
    };
    const first = median(ogd.map((x) => x.ms));
    const phase = (contender: string, ms: number): PullRow => ({ comparison: `ogd pull phases alone (same image)`, contender, runs: 1, medianMs: ms, minMs: ms, maxMs: ms, cpuS: 0, ratioToFirst: 1 });
    return [
      row('ogd pull', ogd, first),
      row('skopeo copy → containers-storage overlay', skopeo, first),
      phase('download (3 blobs into the blob cache)', b.downloadMs!),
      phase('decompress (gunzip, to nowhere)', b.decompressMs!),
      phase('apply (import the 3 tars into a store)', b.applyMs!),
    ];
  } finally {
    await registry.stop();
    await cleanupScratch();
  }
}

/** Runs a command under /usr/bin/time; wall ms and CPU seconds (user + sys, children included). */
function timed(command: string, args: string[]): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-f', 'OGDCPU %U %S', command, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const m = /OGDCPU ([\d.]+) ([\d.]+)/.exec(stderr);
      if (code !== 0 || m === null) reject(new Error(`${command} ${args.join(' ')} failed (${code}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
      else resolve({ ms, cpuS: Number(m[1]) + Number(m[2]) });
    });
  });
}

interface LayerBlob {
  digest: string;
  size: number;
  diffId: string;
}

/** The 3-layer OCI layout of the Debian big rootfs, made once (tar + gzip -6, digests while writing). */
async function ensureLayout(log: (l: string) => void): Promise<LayerBlob[]> {
  const done = join(layout, 'layers.json');
  if (existsSync(done)) return JSON.parse(await readFile(done, 'utf8')) as LayerBlob[];
  log(`pull: making the 3-layer image of ${source} (once; kept in ${layout})…`);
  await rm(layout, { recursive: true, force: true });
  const blobs = join(layout, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const { Hasher } = await import('../lib/image/digest.js');
  const parts = [
    ['--exclude=./usr/lib', '--exclude=./usr/share', '.'],
    ['./usr/lib'],
    ['./usr/share'],
  ];
  const layers: LayerBlob[] = [];
  for (const members of parts) {
    const tar = spawn('tar', ['-C', source, '--numeric-owner', '--format=pax', '--xattrs', '-cf', '-', ...members], { stdio: ['ignore', 'pipe', 'inherit'] });
    const diff = new Hasher('sha256');
    const blob = new Hasher('sha256');
    const temp = join(blobs, 'tmp');
    await pipeline(tar.stdout, diff, createGzip({ level: 6 }), blob, createWriteStream(temp));
    const digest = blob.digest();
    await rename(temp, join(blobs, digest.slice(7)));
    layers.push({ digest, size: blob.bytes, diffId: diff.digest() });
  }
  const { sha256Of } = await import('../lib/image/digest.js');
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) }, history: layers.map(() => ({ created_by: 'bench/pull.ts' })) }),
  );
  const configDigest = sha256Of(config);
  await writeFile(join(blobs, configDigest.slice(7)), config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.size })),
    }),
  );
  const manifestDigest = sha256Of(manifest);
  await writeFile(join(blobs, manifestDigest.slice(7)), manifest);
  await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(layout, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': TAG } }] }),
  );
  await writeFile(done, JSON.stringify(layers));
  return layers;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function startRegistry(dir: string): Promise<{ host: string; stop(): Promise<void> }> {
  await mkdir(join(dir, 'storage'), { recursive: true });
  const port = await freePort();
  const config = join(dir, 'config.yml');
  await writeFile(config, `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'storage')}\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  // Through setpriv --pdeathsig: the server dies with this process even when it crashes
  // before its cleanup runs (a test run killed, an addon that fails to load).
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', 'docker-registry', 'serve', config], { stdio: ['ignore', 'ignore', 'ignore'] });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const host = `127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const ok = await fetch(`http://${host}/v2/`).then((r) => r.status === 200, () => false);
    if (ok) break;
    if (child.exitCode !== null || i > 100) throw new Error('docker-registry did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function removeOgd(home: string): Promise<void> {
  await sh('node', [ogdMain, '--home', home, 'cleanup', '--force']).catch(() => undefined);
  await sh('rm', ['-rf', '--one-file-system', home]);
}

async function removeContainersStorage(dir: string): Promise<void> {
  await sh('containers-storage', ['--graph', `${dir}/root`, '--run', `${dir}/run`, '--storage-driver', 'overlay', 'shutdown']).catch(() => undefined);
  await unmountBelow(dir);
  await sh('rm', ['-rf', '--one-file-system', dir]);
}

async function unmountBelow(dir: string): Promise<void> {
  const { readMountInfo } = await import('../lib/mountinfo.js');
  const below = (await readMountInfo()).map((m) => m.mountPoint).filter((m) => m === dir || m.startsWith(dir + '/'));
  for (const m of below.sort((a, b) => b.length - a.length)) await sh('umount', ['-l', m]).catch(() => undefined);
}

async function cleanupScratch(): Promise<void> {
  await unmountBelow(scratch);
  await sh('rm', ['-rf', scratch]);
}

/** The phases of a pull, each alone: download, decompress, apply. Prints JSON. */
async function breakdown(host: string, dir: string): Promise<void> {
  const { openStore } = await import('../lib/index.js');
  const { BlobCache } = await import('../lib/image/blob-cache.js');
  const { readImage } = await import('../lib/image/pull.js');
  const { RegistrySource } = await import('../lib/image/source.js');
  const ref = { transport: 'docker' as const, registry: host, repository: 'bench/debian', tag: TAG, digest: undefined };
  const src = new RegistrySource(ref, { tlsVerify: false });
  const image = await readImage(src, {});
  const cache = new BlobCache(join(dir, 'blobs'));
  let t = process.hrtime.bigint();
  const files: string[] = [];
  for (const l of image.manifest.layers) files.push(await cache.fetch(l.digest, l.size, (offset, s) => src.blob(l.digest, offset, s)));
  const downloadMs = Number(process.hrtime.bigint() - t) / 1e6;
  t = process.hrtime.bigint();
  for (const f of files) await pipeline(createReadStream(f), createGunzip(), new Writable({ write: (_c, _e, done) => done() }));
  const decompressMs = Number(process.hrtime.bigint() - t) / 1e6;
  // Uncompressed tars on disk first, so apply is timed alone.
  const tars: string[] = [];
  for (const [i, f] of files.entries()) {
    const tar = join(dir, `layer-${i}.tar`);
    await pipeline(createReadStream(f), createGunzip(), createWriteStream(tar));
    tars.push(tar);
  }
  const store = await openStore(join(dir, 'store'));
  t = process.hrtime.bigint();
  let parent: string | undefined;
  for (const [i, tar] of tars.entries()) {
    await store.importLayer(`l${i}`, createReadStream(tar, { highWaterMark: 1 << 20 }), { ...(parent ? { parent } : {}) });
    parent = `l${i}`;
  }
  const applyMs = Number(process.hrtime.bigint() - t) / 1e6;
  await store.cleanup({ force: true });
  process.stdout.write(JSON.stringify({ downloadMs, decompressMs, applyMs }) + '\n');
}

if (process.argv[2] === '--worker') {
  if (process.argv[3] === 'breakdown') await breakdown(process.argv[4]!, process.argv[5]!);
} else if (process.argv[1] === self) {
  const i = process.argv.indexOf('--runs');
  const rows = await run(i > 0 ? { runs: Number(process.argv[i + 1]) } : {});
  process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
}
