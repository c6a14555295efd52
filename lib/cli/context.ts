// What a command gets from main.ts: the global flags, an AbortSignal fired by Ctrl-C,
// the store (opened lazily, so `ogd copy` and `--help` never touch one; read-only
// commands use storeIfExists() and create nothing), and the two ways to print (human
// text, or one JSON document with --json). The CLI keeps no bookkeeping of its own:
// parents, kinds and mount references are the store's records, shared with every
// library user of the same home.
import { access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { DriverName, Store } from '../index.js';
import type { OptionSpec } from './command.js';
import { ProgressBar } from './progress.js';

/** The flags every command takes, before or after its name. */
export const globalOptions: OptionSpec = {
  home: { type: 'string', value: 'DIR', help: 'the store', byDefault: '$OGD_HOME, else ./.ogd' },
  driver: { type: 'string', value: 'NAME', help: 'graph driver of a new store: overlay, overlay2 or vfs; a store keeps its own', byDefault: 'overlay' },
  json: { type: 'boolean', help: 'print results (and errors) as JSON on stdout' },
  'no-sync': { type: 'boolean', help: 'flush nothing (a transient store): faster, but a power cut may lose what a command reported done' },
  help: { type: 'boolean', short: 'h', help: 'this help' },
  version: { type: 'boolean', short: 'V', help: 'versions of ogd, Node, the addon, the kernel and its overlayfs' },
};

export interface GlobalOptions {
  home: string;
  /** --driver; undefined: the store's own (a new store: overlay). */
  driverName: DriverName | undefined;
  json: boolean;
  /** false with --no-sync: the store flushes nothing (openStore's durable: false). */
  durable: boolean;
}

export class CliContext {
  readonly home: string;
  readonly driverName: DriverName | undefined;
  readonly json: boolean;
  readonly durable: boolean;
  readonly signal: AbortSignal;
  /** The command as typed (an alias such as `rm` included): what its messages start with. */
  readonly commandName: string;
  #store: Promise<Store> | undefined;

  constructor(opts: GlobalOptions, signal: AbortSignal, commandName = '') {
    this.commandName = commandName;
    this.home = resolve(opts.home);
    this.driverName = opts.driverName;
    this.json = opts.json;
    this.durable = opts.durable;
    this.signal = signal;
  }

  /** The store at --home, created when missing. */
  store(): Promise<Store> {
    this.#store ??= (async () => {
      // Loaded here, not at the top: commands without a store (copy) skip the store's modules.
      const { openStore } = await import('../index.js');
      return openStore(this.home, { ...(this.driverName !== undefined ? { driver: this.driverName } : {}), ...(this.durable ? {} : { durable: false }) });
    })();
    return this.#store;
  }

  /**
   * The store at --home when one is there; undefined (and nothing created) otherwise.
   * A home where no store could ever be (its filesystem, missing privileges) is refused
   * with the driver's error rather than reported as merely empty.
   */
  async storeIfExists(): Promise<Store | undefined> {
    const { DRIVER_NAMES, checkStoreHome } = await import('../index.js');
    const markers = [join(this.home, 'layers'), join(this.home, 'layers.json'), ...DRIVER_NAMES.map((n) => join(this.home, n))];
    for (const m of markers) {
      if (await access(m).then(() => true, () => false)) return this.store();
    }
    await checkStoreHome(this.home, this.driverName !== undefined ? { driver: this.driverName } : {});
    return undefined;
  }

  /** The --parent option for diff, changes, diff-size: "" means none (null), absent means the record's. */
  static parentArg(explicit: string | undefined): string | null | undefined {
    if (explicit === undefined) return undefined;
    return explicit === '' ? null : explicit;
  }

  /** parentArg, with an image name standing for its top layer. */
  static async parentLayer(store: Store, explicit: string | undefined): Promise<string | null | undefined> {
    const p = CliContext.parentArg(explicit);
    return typeof p === 'string' ? store.resolveLayer(p) : p;
  }

  progress(label: string): ProgressBar {
    return new ProgressBar(label);
  }

  /** Human output: one line per call. Suppressed with --json. */
  say(line: string): void {
    if (!this.json) process.stdout.write(line + '\n');
  }

  /** Machine output: the command's result as one JSON document. Only with --json. */
  result(value: unknown): void {
    if (this.json) process.stdout.write(JSON.stringify(value, null, 2) + '\n');
  }
}
