// Placeholder until layer export lands: diff, changes and diffSize of the overlay driver.
import type { Readable } from 'node:stream';
import { NotSupportedError } from '../../errors.js';
import type { Change, LongOperationOptions } from '../../types.js';
import type { OverlayInternals } from './internals.js';

export async function changes(d: OverlayInternals, id: string, parent: string | undefined, opts: LongOperationOptions = {}): Promise<Change[]> {
  void d, id, parent, opts;
  throw new NotSupportedError('changes is not implemented yet');
}

export async function diff(d: OverlayInternals, id: string, parent: string | undefined, opts: LongOperationOptions = {}): Promise<Readable> {
  void d, id, parent, opts;
  throw new NotSupportedError('diff is not implemented yet');
}

export async function diffSize(d: OverlayInternals, id: string, parent: string | undefined, opts: LongOperationOptions = {}): Promise<number> {
  void d, id, parent, opts;
  throw new NotSupportedError('diffSize is not implemented yet');
}
