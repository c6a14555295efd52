// Placeholder until the overlay driver lands.
import { NotSupportedError } from '../../errors.js';
import type { Driver, DriverOptions } from '../../types.js';

export async function initOverlay(home: string, opts: DriverOptions): Promise<Driver> {
  void home;
  void opts;
  throw new NotSupportedError('the overlay driver is not implemented yet');
}
