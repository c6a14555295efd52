// Placeholder until the layer apply lands. The contract: applies an uncompressed
// layer tar (OCI changeset rules, whiteouts) into `root`, which the caller has
// staged; returns the bytes of file content applied.
import { NotSupportedError } from '../errors.js';
import type { ApplyDiffOptions, DiffSource, IDMap } from '../types.js';

export interface ApplyTarOptions extends ApplyDiffOptions {
  uidMaps?: readonly IDMap[];
  gidMaps?: readonly IDMap[];
}

export async function applyTar(root: string, diff: DiffSource, opts: ApplyTarOptions = {}): Promise<number> {
  void root, diff, opts;
  throw new NotSupportedError('applyTar is not implemented yet');
}
