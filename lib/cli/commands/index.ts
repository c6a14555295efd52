// Every ogd command, in the order --help lists them.
import type { Command } from '../command.js';
import { copy } from './copy.js';
import { demo } from './demo.js';
import { changes, diff, diffSize } from './diff.js';
import { applyDiff, importLayer } from './import.js';
import { cleanup, create, exists, ls, metadata, remove, status } from './layers.js';
import { mount, unmount } from './mount.js';

export const commands: readonly Command[] = [
  status,
  ls,
  exists,
  metadata,
  create,
  importLayer,
  applyDiff,
  mount,
  unmount,
  diff,
  changes,
  diffSize,
  remove,
  cleanup,
  copy,
  demo,
];
