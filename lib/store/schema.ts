// What the store reads back from its own home, checked as if a stranger wrote it: a
// record can be truncated, garbage, valid JSON of the wrong shape, or planted to climb
// out of the home. One validator per kind of name, and one schema per kind of file,
// here; nothing read from disk is joined to a path or used before it passes them.
//
//   layer id      lib/ids.ts validateId (one path component)
//   image id      64 lowercase hex (the config digest's hex, podman's image id)
//   digest        lib/image/digest.ts isDigest (sha256/sha512, canonical)
//   image name    isImageName (non-empty, bounded, no spaces or control characters)
//   blob name     blobName: "<hex>" of a sha256 digest in home/blobs/sha256
//
// Fields the schema does not know are kept as they are (a newer writer may add some);
// those it knows must have their type. A record must name the file it is in.
import { validateId } from '../ids.js';
import { isDigest } from '../image/digest.js';
import type { ImageLayerRecord, ImageRecord, LayerKind, LayerRecord } from './types.js';

/** What the store keeps of an image name at most, in bytes (a reference's repo:tag fits with room to spare). */
export const MAX_NAME_BYTES = 512;
/** Names a record may carry (a layer's or an image's). */
const MAX_NAMES = 4096;
/** Layers an image may list (overlay2 mounts at most 999). */
const MAX_IMAGE_LAYERS = 4096;
const IMAGE_ID = /^[0-9a-f]{64}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Why a value is not what was expected; `at` is the JSON path of the field. */
class ShapeError extends Error {}

function fail(at: string, want: string, got: unknown): never {
  const shown = got === undefined ? 'nothing' : Array.isArray(got) ? 'a list' : got === null ? 'null' : typeof got === 'object' ? 'an object' : JSON.stringify(got).slice(0, 80);
  throw new ShapeError(`${at} must be ${want}, not ${shown}`);
}

/** Throws unless `check` holds; used for the kinds of name below. */
function named(at: string, ok: boolean, want: string, got: unknown): void {
  if (!ok) fail(at, want, got);
}

export function isLayerId(v: unknown): v is string {
  try {
    validateId(v);
    return true;
  } catch {
    return false;
  }
}

export function isImageId(v: unknown): v is string {
  return typeof v === 'string' && IMAGE_ID.test(v);
}

export function isImageName(v: unknown): v is string {
  return typeof v === 'string' && v !== '' && Buffer.byteLength(v) <= MAX_NAME_BYTES && !/[\s\0-\x1f\x7f]/.test(v);
}

/** The sha256 digest a file name in home/blobs/sha256 stands for, or undefined when it names no blob (a partial download, junk). */
export function blobName(name: string): string | undefined {
  return IMAGE_ID.test(name) ? `sha256:${name}` : undefined;
}

type Fields = Readonly<Record<string, unknown>>;

function object(v: unknown, at: string): Fields {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(at, 'an object', v);
  return v as Fields;
}

function string(v: unknown, at: string): string {
  if (typeof v !== 'string') fail(at, 'a string', v);
  return v;
}

function count(v: unknown, at: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(at, 'a whole number of 0 or more', v);
  return v;
}

function boolean(v: unknown, at: string): boolean {
  if (typeof v !== 'boolean') fail(at, 'true or false', v);
  return v;
}

function list<T>(v: unknown, at: string, max: number, item: (v: unknown, at: string) => T): T[] {
  if (!Array.isArray(v)) fail(at, 'a list', v);
  if (v.length > max) fail(at, `a list of at most ${max}`, `${v.length} entries`);
  return v.map((x, i) => item(x, `${at}[${i}]`));
}

/** An optional field: absent is fine, present must pass `check`. */
function optional(o: Fields, key: string, at: string, check: (v: unknown, at: string) => unknown): void {
  if (o[key] !== undefined) check(o[key], `${at}.${key}`);
}

const layerId = (v: unknown, at: string): string => (named(at, isLayerId(v), 'a layer id (one path component)', v), v as string);
const imageId = (v: unknown, at: string): string => (named(at, isImageId(v), 'an image id (64 hex digits)', v), v as string);
const digest = (v: unknown, at: string): string => (named(at, isDigest(v), 'a sha256/sha512 digest', v), v as string);
const imageName = (v: unknown, at: string): string => (named(at, isImageName(v), `an image name (at most ${MAX_NAME_BYTES} bytes, no spaces)`, v), v as string);
const layerName = (v: unknown, at: string): string => (named(at, typeof v === 'string' && Buffer.byteLength(v) <= MAX_NAME_BYTES, `a name of at most ${MAX_NAME_BYTES} bytes`, v), v as string);
const kind = (v: unknown, at: string): LayerKind => (named(at, v === 'image' || v === 'container', '"image" or "container"', v), v as LayerKind);
const base64 = (v: unknown, at: string): string => (named(at, typeof v === 'string' && v.length % 4 === 0 && BASE64.test(v), 'base64', v), v as string);

function layerRecordShape(v: unknown, file: string): LayerRecord {
  const o = object(v, 'the record');
  const at = 'record';
  const id = layerId(o['id'], `${at}.id`);
  if (id !== file) fail(`${at}.id`, `the file's name ${JSON.stringify(file)}`, id);
  optional(o, 'parent', at, layerId);
  kind(o['kind'], `${at}.kind`);
  list(o['names'], `${at}.names`, MAX_NAMES, layerName);
  string(o['created'], `${at}.created`);
  optional(o, 'mountLabel', at, string);
  optional(o, 'diffSize', at, count);
  optional(o, 'uncompressedSize', at, count);
  optional(o, 'uncompressedDigest', at, digest);
  optional(o, 'incomplete', at, boolean);
  if (o['parent'] === id) fail(`${at}.parent`, 'another layer than itself', id);
  return o as unknown as LayerRecord;
}

function imageLayerShape(v: unknown, at: string): ImageLayerRecord {
  const o = object(v, at);
  layerId(o['id'], `${at}.id`);
  digest(o['diffId'], `${at}.diffId`);
  const blob = object(o['blob'], `${at}.blob`);
  string(blob['mediaType'], `${at}.blob.mediaType`);
  digest(blob['digest'], `${at}.blob.digest`);
  count(blob['size'], `${at}.blob.size`);
  return o as unknown as ImageLayerRecord;
}

function imageRecordShape(v: unknown, file: string): ImageRecord {
  const o = object(v, 'the record');
  const at = 'record';
  const id = imageId(o['id'], `${at}.id`);
  if (id !== file) fail(`${at}.id`, `the file's name ${JSON.stringify(file)}`, id);
  digest(o['digest'], `${at}.digest`);
  list(o['names'], `${at}.names`, MAX_NAMES, imageName);
  const layers = list(o['layers'], `${at}.layers`, MAX_IMAGE_LAYERS, imageLayerShape);
  optional(o, 'topLayer', at, layerId);
  if (o['topLayer'] !== layers.at(-1)?.id) fail(`${at}.topLayer`, `its last layer ${JSON.stringify(layers.at(-1)?.id ?? null)}`, o['topLayer']);
  base64(o['manifest'], `${at}.manifest`);
  base64(o['config'], `${at}.config`);
  string(o['created'], `${at}.created`);
  optional(o, 'incomplete', at, boolean);
  return o as unknown as ImageRecord;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/** `data` (a file's bytes) as JSON checked by `shape`, or why it is not one. */
function parseWith<T>(data: Buffer, file: string, shape: (v: unknown, file: string) => T): Parsed<T> {
  let v: unknown;
  try {
    v = JSON.parse(data.toString('utf8'));
  } catch (err) {
    return { ok: false, reason: data.length === 0 ? 'it is empty' : `it is not JSON (${(err as Error).message})` };
  }
  try {
    return { ok: true, value: shape(v, file) };
  } catch (err) {
    if (err instanceof ShapeError) return { ok: false, reason: err.message };
    throw err;
  }
}

/** A layer record (home/layers/<file>) from its bytes. */
export function parseLayerRecord(data: Buffer, file: string): Parsed<LayerRecord> {
  return parseWith(data, file, layerRecordShape);
}

/** An image record (home/images/<file>) from its bytes. */
export function parseImageRecord(data: Buffer, file: string): Parsed<ImageRecord> {
  return parseWith(data, file, imageRecordShape);
}

/** Why a file could not be read as a record (a fifo, a directory, a huge file, a symlink). */
export function unreadable(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EISDIR') return 'it is a directory';
  if (code === 'EINVAL') return 'it is not a regular file (a fifo, socket or device)';
  if (code === 'EFBIG') return 'it is far too big for a record';
  if (code === 'ELOOP') return 'it is a symbolic link';
  return `it cannot be read (${(err as Error).message})`;
}
