// The length and sha256 of a layer tar as it streams into applyDiff (what containers/
// storage records as a layer's uncompressed size and digest), without a second read.
import { createHash } from 'node:crypto';
import type { DiffSource } from '../types.js';

export interface Digesting {
  source: AsyncIterable<Uint8Array>;
  /** Bytes seen and "sha256:<hex>", once the source has been read. */
  result(): { size: number; digest: string };
}

export function digesting(diff: DiffSource): Digesting {
  const hash = createHash('sha256');
  let size = 0;
  const source = (async function* () {
    // A whole tar in one buffer is one chunk (iterating a Buffer would give its bytes).
    const chunks = diff instanceof Uint8Array ? [diff] : (diff as AsyncIterable<Uint8Array | string>);
    for await (const chunk of chunks) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      hash.update(bytes);
      size += bytes.length;
      yield bytes;
    }
  })();
  return { source, result: () => ({ size, digest: `sha256:${hash.copy().digest('hex')}` }) };
}
