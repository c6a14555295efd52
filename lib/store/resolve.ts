// What an argument names, as podman resolves ids: an exact id, else a name, else a
// unique prefix of a hex id (the 12-hex short ids `ogd ls`, `ogd ps` and `ogd images`
// print). The one place for the rule, for layers and images alike; a prefix that
// starts several ids is refused naming them (AmbiguousIdError), never guessed.
import { AmbiguousIdError, ImageNotFoundError, LayerNotFoundError } from '../errors.js';
import type { LayerStore } from './store.js';
import type { ImageRecord, StoreResolveOptions } from './types.js';

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
 * The layer `arg` names: a layer id, a layer's name (`ogd create --name`), an image's
 * id or name (its top layer; unless opts.images is false), else a unique prefix of a
 * layer id or an image id.
 */
export async function resolveLayerArg(s: LayerStore, arg: string, opts: StoreResolveOptions = {}): Promise<string> {
  if (typeof arg !== 'string' || arg === '') throw new LayerNotFoundError(String(arg));
  const layers = (await s.records()).filter((r) => r.incomplete !== true);
  if (layers.some((l) => l.id === arg)) return arg;
  const named = layers.filter((l) => Array.isArray(l.names) && l.names.includes(arg));
  if (named.length > 1) throw new AmbiguousIdError(arg, named.map((l) => l.id));
  if (named.length === 1) return named[0]!.id;
  const withImages = opts.images !== false;
  let images: ImageRecord[] = [];
  if (withImages) {
    const { findImageByName, imageRecords } = await import('./images.js');
    images = (await imageRecords(s)).filter((r) => r.incomplete !== true);
    const image = findImageByName(images, arg);
    if (image !== undefined) return topLayerOf(image, arg);
  }
  // A prefix: of a layer id or of an image id, one in all.
  const candidates = [...layers.map((l) => ({ id: l.id, layer: l.id })), ...images.map((i) => ({ id: i.id, image: i }))];
  const found = uniquePrefix(candidates, arg);
  if (found === undefined) throw new LayerNotFoundError(arg);
  return 'layer' in found ? found.layer : topLayerOf(found.image, arg);
}

function topLayerOf(image: ImageRecord, arg: string): string {
  if (image.topLayer === undefined) throw new ImageNotFoundError(arg, 'has no layers');
  return image.topLayer;
}
