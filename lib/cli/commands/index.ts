// Every ogd command, in the order --help lists them. Each is loaded only when it runs
// (or for the full --help): a process pays the start-up of the one command it runs,
// which matters when `ogd copy` is timed against `cp`.
import type { Command } from '../command.js';

const loaders = {
  status: async () => (await import('./layers.js')).status,
  ls: async () => (await import('./layers.js')).ls,
  exists: async () => (await import('./layers.js')).exists,
  metadata: async () => (await import('./layers.js')).metadata,
  create: async () => (await import('./layers.js')).create,
  import: async () => (await import('./import.js')).importLayer,
  'apply-diff': async () => (await import('./import.js')).applyDiff,
  mount: async () => (await import('./mount.js')).mount,
  unmount: async () => (await import('./mount.js')).unmount,
  diff: async () => (await import('./diff.js')).diff,
  changes: async () => (await import('./diff.js')).changes,
  'diff-size': async () => (await import('./diff.js')).diffSize,
  remove: async () => (await import('./layers.js')).remove,
  cleanup: async () => (await import('./layers.js')).cleanup,
  check: async () => (await import('./layers.js')).check,
  pull: async () => (await import('./images.js')).pull,
  images: async () => (await import('./images.js')).images,
  rmi: async () => (await import('./tags.js')).rmi,
  tag: async () => (await import('./tags.js')).tag,
  untag: async () => (await import('./tags.js')).untag,
  commit: async () => (await import('./images.js')).commit,
  push: async () => (await import('./images.js')).push,
  df: async () => (await import('./df.js')).df,
  prune: async () => (await import('./prune.js')).prune,
  image: async () => (await import('./prune.js')).image,
  system: async () => (await import('./prune.js')).system,
  copy: async () => (await import('./copy.js')).copy,
  demo: async () => (await import('./demo.js')).demo,
} satisfies Record<string, () => Promise<Command>>;

export type CommandName = keyof typeof loaders;

export function isCommandName(name: string): name is CommandName {
  return Object.hasOwn(loaders, name);
}

export function loadCommand(name: CommandName): Promise<Command> {
  return loaders[name]();
}

export function loadAllCommands(): Promise<Command[]> {
  return Promise.all(Object.values(loaders).map((load) => load()));
}
