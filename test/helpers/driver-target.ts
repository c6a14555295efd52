// A LayerTarget (lib/image/image.ts) over a raw driver, for the image tests that pull
// without a store.
import type { Driver } from '../../lib/types.js';
import type { LayerTarget } from '../../lib/image/image.js';

/**
 * A LayerTarget over a raw driver: a layer exists when the driver has it (a raw driver
 * keeps no "incomplete" record: the store's target does), and a failed put removes
 * the layer it created. Two processes pulling into one raw driver home at once are
 * not coordinated (the store's locks are).
 */
export function driverTarget(driver: Driver): LayerTarget {
  return {
    dir: driver.home,
    has: (id) => driver.exists(id),
    async put(id, parent, tar, opts) {
      await driver.create(id, parent);
      try {
        return await driver.applyDiff(id, parent, tar, { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
      } catch (err) {
        tar.destroy();
        await driver.remove(id);
        throw err;
      }
    },
  };
}
