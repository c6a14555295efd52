// A tiny runnable image for tests that run a command in a container: this machine's
// /bin/sh and the shared libraries ldd names for it, as one gzip layer of an OCI
// layout written by hand (image "shell"), and optionally "big": the same layer plus
// an uncompressed layer of one file of random bytes (incompressible, so its blob is
// as large on the wire as on disk). GNU tar writes the layer tars; pushShellImages
// uploads them to a registry as the distribution spec says (monolithic blob uploads,
// then the manifest), with no peer tool's start-up or recompression in the way.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';

const run = promisify(execFile);

interface Blob {
  mediaType: string;
  digest: string;
  size: number;
}

async function putBlob(layout: string, bytes: Buffer, mediaType: string): Promise<Blob> {
  const hex = createHash('sha256').update(bytes).digest('hex');
  await writeFile(join(layout, 'blobs', 'sha256', hex), bytes);
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
}

async function tarOf(dir: string): Promise<Buffer> {
  const { stdout } = await run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', dir, '-cf', '-', '.'], {
    encoding: 'buffer',
    maxBuffer: 1 << 30,
  });
  return stdout;
}

/** /bin/sh and the libraries it loads, at the paths ldd gives (real files, links followed). */
async function stageShell(root: string): Promise<void> {
  const { stdout } = await run('ldd', ['/bin/sh']);
  const libs = [...stdout.matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]!);
  for (const file of ['/bin/sh', ...libs]) {
    await mkdir(join(root, dirname(file)), { recursive: true });
    await copyFile(file, join(root, file));
  }
  await mkdir(join(root, 'tmp'), { mode: 0o1777 });
}

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

interface LayoutImage {
  manifest: Blob;
  /** The config and the layers: what the manifest names. */
  blobs: Blob[];
}

async function putImage(layout: string, layers: Array<{ blob: Blob; diffId: string }>): Promise<LayoutImage> {
  const config = Buffer.from(
    JSON.stringify({
      architecture: ARCH[process.arch] ?? process.arch,
      os: 'linux',
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    }),
  );
  const configBlob = await putBlob(layout, config, 'application/vnd.oci.image.config.v1+json');
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configBlob, layers: layers.map((l) => l.blob) }),
  );
  return { manifest: await putBlob(layout, manifest, 'application/vnd.oci.image.manifest.v1+json'), blobs: [configBlob, ...layers.map((l) => l.blob)] };
}

export interface ShellLayout {
  dir: string;
  images: Record<string, LayoutImage>;
  /** The big layer's blob (absent without `bigBytes`). */
  bigBlob?: Blob;
}

/** Writes the layout at `dir` (scratch files under `work`): tag "shell", and "big" when `bigBytes` is given. */
export async function buildShellLayout(dir: string, work: string, opts: { bigBytes?: number } = {}): Promise<ShellLayout> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const shellRoot = join(work, 'shell-root');
  await stageShell(shellRoot);
  const shellTar = await tarOf(shellRoot);
  const shell = { blob: await putBlob(dir, gzipSync(shellTar), 'application/vnd.oci.image.layer.v1.tar+gzip'), diffId: `sha256:${createHash('sha256').update(shellTar).digest('hex')}` };
  const images: Record<string, LayoutImage> = { shell: await putImage(dir, [shell]) };
  let bigBlob: Blob | undefined;
  if (opts.bigBytes !== undefined) {
    const bigRoot = join(work, 'big-root');
    await mkdir(bigRoot);
    await writeFile(join(bigRoot, 'random.bin'), randomBytes(opts.bigBytes));
    bigBlob = await putBlob(dir, await tarOf(bigRoot), 'application/vnd.oci.image.layer.v1.tar');
    images['big'] = await putImage(dir, [shell, { blob: bigBlob, diffId: bigBlob.digest }]);
  }
  const manifests = Object.entries(images).map(([tag, image]) => ({ ...image.manifest, annotations: { 'org.opencontainers.image.ref.name': tag } }));
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }));
  return bigBlob !== undefined ? { dir, images, bigBlob } : { dir, images };
}

/** Pushes every image of the layout to http://HOST/v2/REPO, tagged with its layout tag. */
export async function pushShellImages(layout: ShellLayout, host: string, repo: string): Promise<void> {
  const base = `http://${host}/v2/${repo}`;
  const expect = async (res: Response, status: number, what: string) => {
    if (res.status !== status) throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
    return res;
  };
  const blobFile = (b: Blob) => join(layout.dir, 'blobs', 'sha256', b.digest.slice('sha256:'.length));
  for (const [tag, image] of Object.entries(layout.images)) {
    for (const blob of image.blobs) {
      const start = await expect(await fetch(`${base}/blobs/uploads/`, { method: 'POST' }), 202, `upload of ${blob.digest}`);
      const location = new URL(start.headers.get('location')!, base);
      location.searchParams.set('digest', blob.digest);
      await expect(
        await fetch(location, { method: 'PUT', body: await readFile(blobFile(blob)), headers: { 'content-type': 'application/octet-stream' } }),
        201,
        `upload of ${blob.digest}`,
      );
    }
    const manifest = await readFile(blobFile(image.manifest));
    await expect(await fetch(`${base}/manifests/${tag}`, { method: 'PUT', body: manifest, headers: { 'content-type': image.manifest.mediaType } }), 201, `manifest ${tag}`);
  }
}
