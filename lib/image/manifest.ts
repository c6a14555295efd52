// Manifests, indexes and configs as they come from a registry or a layout: parsed from
// bytes already size-bounded and digest-checked, then checked field by field (media
// types known, digests in canonical form, sizes sane) before anything uses them. An
// index resolves to the manifest of one platform.
import { arch as hostArch } from 'node:os';
import { InvalidImageError } from '../errors.js';
import { parseDigest, type Digest } from './digest.js';

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** What a registry may answer to a manifest GET, in the Accept header's order. */
export const ACCEPTED_MANIFEST_TYPES = [MediaType.ociIndex, MediaType.dockerManifestList, MediaType.ociManifest, MediaType.dockerManifest];
const MANIFEST_TYPES = new Set<string>([MediaType.ociManifest, MediaType.dockerManifest]);
const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerManifestList]);
const CONFIG_TYPES = new Set<string>([MediaType.ociConfig, MediaType.dockerConfig]);
const LAYER_TYPES = new Set<string>([MediaType.ociLayer, MediaType.ociLayerGzip, MediaType.ociLayerZstd, MediaType.dockerLayerGzip]);

/** containers/image's iolimits: no manifest, index or config needs more; a registry sending more is refused. */
export const MAX_MANIFEST_BYTES = 4 << 20;
export const MAX_CONFIG_BYTES = 4 << 20;

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
}

/** The parts of an image config this package reads or writes; the rest is kept as found. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  rootfs: { type: 'layers'; diff_ids: Digest[] };
  history?: Array<{ created?: string; author?: string; created_by?: string; comment?: string; empty_layer?: boolean }>;
  created?: string;
  [key: string]: unknown;
}

type Json = Record<string, unknown>;

function parseJson(what: string, bytes: Uint8Array): Json {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new InvalidImageError(`${what} is not JSON`, { cause: err });
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidImageError(`${what} is not a JSON object`);
  return v as Json;
}

function parseSize(what: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new InvalidImageError(`${what}: size ${JSON.stringify(v)} is not a non-negative integer`);
  return v;
}

function parseStringMap(what: string, v: unknown): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'string')) {
    throw new InvalidImageError(`${what}: annotations must map strings to strings`);
  }
  return v as Record<string, string>;
}

function parseDescriptor(what: string, v: unknown): Descriptor {
  if (v === null || typeof v !== 'object') throw new InvalidImageError(`${what} is not a descriptor`);
  const d = v as Json;
  if (typeof d.mediaType !== 'string') throw new InvalidImageError(`${what} has no mediaType`);
  const out: Descriptor = { mediaType: d.mediaType, digest: parseDigest(d.digest, `${what}'s digest`), size: parseSize(what, d.size) };
  const annotations = parseStringMap(what, d.annotations);
  if (annotations !== undefined) out.annotations = annotations;
  if (d.platform !== undefined) {
    const p = d.platform as Json;
    if (p === null || typeof p !== 'object' || typeof p.os !== 'string' || typeof p.architecture !== 'string') throw new InvalidImageError(`${what} has a malformed platform`);
    out.platform = { os: p.os, architecture: p.architecture, ...(typeof p.variant === 'string' ? { variant: p.variant } : {}) };
  }
  return out;
}

export type ParsedManifest = { kind: 'manifest'; manifest: ImageManifest } | { kind: 'index'; index: ImageIndex };

/**
 * Parses a manifest or an index. `declaredType` is the Content-Type (registry) or the
 * descriptor's mediaType (layout); the body's own mediaType, when present, must agree.
 */
export function parseManifest(bytes: Uint8Array, declaredType: string | undefined): ParsedManifest {
  const j = parseJson('the manifest', bytes);
  if (j.schemaVersion !== 2) throw new InvalidImageError(`unsupported manifest schemaVersion ${JSON.stringify(j.schemaVersion)} (only 2: Docker schema 2 and OCI)`);
  const bodyType = typeof j.mediaType === 'string' ? j.mediaType : undefined;
  const declared = declaredType?.split(';')[0]?.trim();
  let type = bodyType ?? (declared !== undefined && declared !== '' && declared !== 'application/json' ? declared : undefined);
  if (type === undefined) type = Array.isArray(j.manifests) ? MediaType.ociIndex : MediaType.ociManifest; // OCI allows leaving it out
  if (bodyType !== undefined && declared !== undefined && declared !== '' && declared !== 'application/json' && declared !== bodyType) {
    throw new InvalidImageError(`the manifest says it is ${bodyType} but was served as ${declared}`);
  }
  if (INDEX_TYPES.has(type)) {
    if (!Array.isArray(j.manifests)) throw new InvalidImageError('the image index has no manifests array');
    return { kind: 'index', index: { schemaVersion: 2, mediaType: type, manifests: j.manifests.map((m, i) => parseDescriptor(`index entry ${i}`, m)) } };
  }
  if (!MANIFEST_TYPES.has(type)) throw new InvalidImageError(`unsupported manifest media type ${JSON.stringify(type)} (supported: ${[...MANIFEST_TYPES, ...INDEX_TYPES].join(', ')})`);
  const config = parseDescriptor('the manifest config', j.config);
  if (!CONFIG_TYPES.has(config.mediaType)) throw new InvalidImageError(`unsupported config media type ${JSON.stringify(config.mediaType)}`);
  if (config.size > MAX_CONFIG_BYTES) throw new InvalidImageError(`the config is ${config.size} bytes, more than the ${MAX_CONFIG_BYTES} accepted`);
  if (!Array.isArray(j.layers)) throw new InvalidImageError('the manifest has no layers array');
  const layers = j.layers.map((l, i) => {
    const d = parseDescriptor(`layer ${i}`, l);
    if (!LAYER_TYPES.has(d.mediaType)) {
      const hint = /nondistributable|foreign/.test(d.mediaType) ? ' (non-distributable layers are not fetched from elsewhere)' : '';
      throw new InvalidImageError(`layer ${i} has unsupported media type ${JSON.stringify(d.mediaType)}${hint}`);
    }
    return d;
  });
  const annotations = parseStringMap('the manifest', j.annotations);
  return { kind: 'manifest', manifest: { schemaVersion: 2, mediaType: type, config, layers, ...(annotations ? { annotations } : {}) } };
}

export function parseConfig(bytes: Uint8Array): ImageConfig {
  const j = parseJson('the image config', bytes);
  const rootfs = j.rootfs as Json | undefined;
  if (rootfs === undefined || rootfs === null || typeof rootfs !== 'object' || rootfs.type !== 'layers' || !Array.isArray(rootfs.diff_ids)) {
    throw new InvalidImageError('the image config has no rootfs of type "layers" with diff_ids');
  }
  const diffIds = rootfs.diff_ids.map((d, i) => parseDigest(d, `diff_ids[${i}]`));
  if (j.history !== undefined && !Array.isArray(j.history)) throw new InvalidImageError('the image config history is not an array');
  return { ...j, rootfs: { type: 'layers', diff_ids: diffIds } } as ImageConfig;
}

/** This machine's platform as OCI names it (Go's GOOS/GOARCH). */
export function hostPlatform(): Platform {
  const map: Record<string, Platform> = {
    x64: { os: 'linux', architecture: 'amd64' },
    arm64: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    arm: { os: 'linux', architecture: 'arm', variant: 'v7' },
    ia32: { os: 'linux', architecture: '386' },
    ppc64: { os: 'linux', architecture: 'ppc64le' },
    s390x: { os: 'linux', architecture: 's390x' },
    riscv64: { os: 'linux', architecture: 'riscv64' },
  };
  return map[hostArch()] ?? { os: 'linux', architecture: hostArch() };
}

export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9_.-]+$/.test(p))) throw new InvalidImageError(`platform ${JSON.stringify(s)} is not os/arch[/variant]`);
  return { os: parts[0]!, architecture: parts[1]!, ...(parts[2] !== undefined ? { variant: parts[2] } : {}) };
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant !== undefined ? `/${p.variant}` : ''}`;
}

/**
 * The index entry for `want`. A wanted variant must match; arm64's v8 is also taken
 * from an entry without a variant (as containerd's platform matcher does).
 */
export function selectPlatform(index: ImageIndex, want: Platform): Descriptor {
  const candidates = index.manifests.filter((m) => MANIFEST_TYPES.has(m.mediaType) && m.platform !== undefined);
  const same = candidates.filter((m) => m.platform!.os === want.os && m.platform!.architecture === want.architecture);
  const exact = same.find((m) => (m.platform!.variant ?? '') === (want.variant ?? ''));
  const loose = same.find((m) => m.platform!.variant === undefined || want.variant === undefined);
  const found = exact ?? loose;
  if (found !== undefined) return found;
  const available = candidates.map((m) => formatPlatform(m.platform!));
  throw new InvalidImageError(
    `no image for platform ${formatPlatform(want)} in the index; available: ${available.length > 0 ? available.join(', ') : 'none'} (choose one with platform: 'os/arch[/variant]')`,
  );
}

/** Serialises a value as the canonical bytes this package writes (and digests). */
export function toBytes(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v), 'utf8');
}
