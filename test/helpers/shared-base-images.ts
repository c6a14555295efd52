// Images that share a base, written as an OCI layout by hand (tar-stream's pack for the
// tars, zlib for gzip; no tool of ours): "base" (one layer: files of repeated bytes,
// which take whole blocks on disk but compress to little, and one of incompressible
// bytes) and app1..appN, each base plus a layer of its own (incompressible bytes, so
// its blob is not tiny). For disk-accounting tests: sizes that matter, in a second.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack, type PackEntry } from './tar-builder.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Blob {
  digest: string;
  size: number;
}

async function putBlob(layout: string, data: Buffer): Promise<Blob> {
  const digest = sha(data);
  await writeFile(join(layout, 'blobs', 'sha256', digest.slice(7)), data);
  return { digest, size: data.length };
}

/** Writes the layout; resolves to the tags it holds ("base", "app1".."appN"). */
export async function writeSharedBaseImages(layout: string, apps: number, opts: { baseFiles?: number; appBytes?: number } = {}): Promise<string[]> {
  await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const baseEntries: PackEntry[] = [{ name: 'usr/', type: 'directory', mode: 0o755 }, { name: 'usr/share/', type: 'directory', mode: 0o755 }];
  for (let i = 0; i < (opts.baseFiles ?? 48); i++) baseEntries.push({ name: `usr/share/f${i}`, content: Buffer.alloc(64 * 1024 + i * 100, i), mode: 0o644 });
  baseEntries.push({ name: 'usr/share/noise', content: randomBytes(400 * 1024), mode: 0o644 });
  const layers: Array<{ tar: Buffer; blob: Blob }> = [];
  const layer = async (entries: PackEntry[]) => {
    const tar = await pack(entries);
    return { tar, blob: await putBlob(layout, gzipSync(tar)) };
  };
  const base = await layer(baseEntries);
  layers.push(base);
  const manifests: Array<{ tag: string; desc: Blob }> = [];
  const image = async (tag: string, own: Array<{ tar: Buffer; blob: Blob }>) => {
    const config = Buffer.from(
      JSON.stringify({ architecture: process.arch === 'arm64' ? 'arm64' : 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: own.map((l) => sha(l.tar)) }, history: own.map(() => ({ created_by: tag })) }),
    );
    const configBlob = await putBlob(layout, config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...configBlob },
        layers: own.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l.blob })),
      }),
    );
    manifests.push({ tag, desc: await putBlob(layout, manifest) });
  };
  await image('base', [base]);
  for (let i = 1; i <= apps; i++) {
    const own = await layer([
      { name: `app${i}/`, type: 'directory', mode: 0o755 },
      { name: `app${i}/data`, content: randomBytes(opts.appBytes ?? 256 * 1024), mode: 0o644 },
      { name: `app${i}/conf`, content: `app ${i}\n`, mode: 0o644 },
    ]);
    await image(`app${i}`, [base, own]);
  }
  await writeFile(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: manifests.map((m) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m.desc, annotations: { 'org.opencontainers.image.ref.name': m.tag } })),
    }),
  );
  return manifests.map((m) => m.tag);
}
