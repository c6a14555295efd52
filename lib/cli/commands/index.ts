// Every ogd command, in the order --help lists them, and the other names a command
// answers to (podman's `rm`, `containers`; `copy`, the tree copy's first name, which
// the benchmarks call). Each is loaded only when it runs (or for the full --help): a
// process pays the start-up of the one command it runs, which matters when
// `ogd copy-tree` is timed against `cp`.
import type { Command } from '../command.js';

const loaders = {
  status: async () => (await import('./layers.js')).status,
  info: async () => (await import('./info.js')).info,
  version: async () => (await import('./info.js')).version,
  ls: async () => (await import('./layers.js')).ls,
  ps: async () => (await import('./containers.js')).ps,
  exists: async () => (await import('./layers.js')).exists,
  inspect: async () => (await import('./inspect.js')).inspect,
  metadata: async () => (await import('./layers.js')).metadata,
  create: async () => (await import('./layers.js')).create,
  import: async () => (await import('./import.js')).importLayer,
  'apply-diff': async () => (await import('./import.js')).applyDiff,
  mount: async () => (await import('./mount.js')).mount,
  unmount: async () => (await import('./mount.js')).unmount,
  diff: async () => (await import('./diff.js')).diff,
  changes: async () => (await import('./diff.js')).changes,
  'diff-size': async () => (await import('./diff.js')).diffSize,
  remove: async () => (await import('./containers.js')).remove,
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
  login: async () => (await import('./login.js')).login,
  logout: async () => (await import('./login.js')).logout,
  'copy-tree': async () => (await import('./copy.js')).copyTreeCommand,
  demo: async () => (await import('./demo.js')).demo,
} satisfies Record<string, () => Promise<Command>>;

type LoaderName = keyof typeof loaders;

/** Other names, as each command's `aliases` lists them (kept here so a lookup loads nothing). */
const aliases = {
  rm: 'remove',
  containers: 'ps',
  copy: 'copy-tree',
} satisfies Record<string, LoaderName>;

export type CommandName = LoaderName | keyof typeof aliases;

export function isCommandName(name: string): name is CommandName {
  return Object.hasOwn(loaders, name) || Object.hasOwn(aliases, name);
}

/** Every name a command answers to (for "did you mean"). */
export function commandNames(): string[] {
  return [...Object.keys(loaders), ...Object.keys(aliases)];
}

export function loadCommand(name: CommandName): Promise<Command> {
  const canonical: LoaderName = Object.hasOwn(aliases, name) ? aliases[name as keyof typeof aliases] : (name as LoaderName);
  return loaders[canonical]();
}

export function loadAllCommands(): Promise<Command[]> {
  return Promise.all(Object.values(loaders).map((load) => load()));
}
