// Picks a driver by name, as containers/storage's graphdriver.New does.
import { InvalidOptionError } from '../errors.js';
import type { Driver, DriverOptions } from '../types.js';

export type DriverName = 'overlay';

export async function createDriver(name: DriverName, home: string, opts: DriverOptions = {}): Promise<Driver> {
  switch (name) {
    case 'overlay': {
      const { initOverlay } = await import('./overlay/driver.js');
      return initOverlay(home, opts);
    }
    default:
      throw new InvalidOptionError(`unknown graph driver ${JSON.stringify(name)}`);
  }
}
