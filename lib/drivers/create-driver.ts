// Picks a driver by name, as containers/storage's graphdriver.New does.
import { InvalidOptionError } from '../errors.js';
import type { Driver, DriverOptions } from '../types.js';
import { checkOverlayHome, checkVfsHome } from './home.js';
import type { StoreDriver } from './store-driver.js';

export type DriverName = 'overlay' | 'overlay2' | 'vfs';

/** Every driver createDriver knows, by name. */
export const DRIVER_NAMES: readonly DriverName[] = ['overlay', 'overlay2', 'vfs'];

export function createDriver(name: DriverName, home: string, opts: DriverOptions = {}): Promise<Driver> {
  return createStoreDriver(name, home, opts);
}

/** Refuses a home the driver could not use (home.ts: checkOverlayHome, checkVfsHome), before anything is created there. */
export async function checkDriverHome(name: DriverName, home: string): Promise<void> {
  switch (name) {
    case 'overlay':
    case 'overlay2':
      await checkOverlayHome(home);
      return;
    case 'vfs':
      await checkVfsHome(home);
      return;
    default:
      throw new InvalidOptionError(`unknown graph driver ${JSON.stringify(name)}`);
  }
}

/** The same driver, with what a Store needs of it (lib/drivers/store-driver.ts). */
export async function createStoreDriver(name: DriverName, home: string, opts: DriverOptions = {}): Promise<StoreDriver> {
  switch (name) {
    case 'overlay': {
      const { initOverlay } = await import('./overlay/driver.js');
      return initOverlay(home, opts);
    }
    case 'overlay2': {
      const { initOverlay2 } = await import('./overlay2/driver.js');
      return initOverlay2(home, opts);
    }
    case 'vfs': {
      const { initVfs } = await import('./vfs/driver.js');
      return initVfs(home, opts);
    }
    default:
      throw new InvalidOptionError(`unknown graph driver ${JSON.stringify(name)}`);
  }
}
