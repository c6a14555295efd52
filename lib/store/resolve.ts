// What an argument names, as podman resolves ids: an exact id, else a name, else a
// unique prefix of a hex id (the 12-hex short ids `ogd ls`, `ogd ps` and `ogd images`
// print). The one place for the rule, for layers and images alike; a prefix that
// starts several ids is refused naming them (AmbiguousIdError), never guessed.
import { AmbiguousIdError, ImageNotFoundError, LayerNotFoundError } from '../errors.js';
import type { LayerStore } from './store.js';
import type { ImageRecord, ResolvedId, StoreResolveOptions } from './types.js';

/** Shortest prefix taken as an id: fewer hex digits would match too much by chance. */
export const MIN_ID_PREFIX = 3;

/** The hex an argument gives as an id prefix ("sha256:" allowed), or undefined when it is not one. */
export function idPrefix(arg: string): string | undefined {
  return /^(?:sha256:)?([0-9a-f]{3,64})$/.exec(arg)?.[1];
}

/** The ids among `ids` that `arg` is a prefix of ([] when `arg` is no hex prefix). */
export function prefixMatches(ids: Iterable<string>, arg: string): string[] {
  const hex = idPrefix(arg);
  if (hex === undefined) return [];
  return [...ids].filter((id) => id.startsWith(hex));
}

/** The one item whose id `arg` starts; undefined for none; AmbiguousIdError for several. */
export function uniquePrefix<T extends { id: string }>(items: T[], arg: string): T | undefined {
  const ids = new Set(prefixMatches(items.map((i) => i.id), arg));
  const found = items.filter((i) => ids.has(i.id));
  if (found.length > 1) throw new AmbiguousIdError(arg, found.map((i) => i.id));
  return found[0];
}


/**
 * What `arg` names: a layer by its id or name (`ogd create --name`); an image by its
 * id or name (unless opts.images is false); else the one layer or image whose id it
 * is a prefix of.
 */
export async function resolveArg(s: LayerStore, arg: string, opts: StoreResolveOptions = {}): Promise<ResolvedId> {
  if (typeof arg !== 'string' || arg === '') throw new LayerNotFoundError(String(arg));
  const layers = (await s.records()).filter((r) => r.incomplete !== true);
  if (layers.some((l) => l.id === arg)) return { kind: 'layer', id: arg };
  const named = layers.filter((l) => Array.isArray(l.names) && l.names.includes(arg));
  if (named.length > 1) throw new AmbiguousIdError(arg, named.map((l) => l.id));
  if (named.length === 1) return { kind: 'layer', id: named[0]!.id };
  let images: ImageRecord[] = [];
  if (opts.images !== false) {
    const { findImageByName, imageRecords } = await import('./images.js');
    images = (await imageRecords(s)).filter((r) => r.incomplete !== true);
    const image = findImageByName(images, arg);
    if (image !== undefined) return { kind: 'image', id: image.id };
  }
  // A prefix: of a layer id or of an image id, one in all.
  const candidates: ResolvedId[] = [...layers.map((l) => ({ kind: 'layer' as const, id: l.id })), ...images.map((i) => ({ kind: 'image' as const, id: i.id }))];
  const found = uniquePrefix(candidates, arg);
  if (found === undefined) throw new LayerNotFoundError(arg);
  return found;
}

/** The layer `arg` names (resolveArg); an image stands for its top layer. */
export async function resolveLayerArg(s: LayerStore, arg: string, opts: StoreResolveOptions = {}): Promise<string> {
  const found = await resolveArg(s, arg, opts);
  if (found.kind === 'layer') return found.id;
  const { resolveImage } = await import('./images.js');
  const image = await resolveImage(s, found.id);
  if (image.topLayer === undefined) throw new ImageNotFoundError(arg, 'has no layers');
  return image.topLayer;
}
