// What a command gets from main.ts: the global flags, an AbortSignal fired by Ctrl-C,
// the driver (opened lazily, so `ogd copy` and `--help` never touch a store), the CLI's
// layer index, and the two ways to print (human text, or one JSON document with --json).
import { join, resolve } from 'node:path';
import type { createDriver, Driver } from '../index.js';
import { LayerIndex } from './layer-index.js';
import { ProgressBar } from './progress.js';

export type DriverName = Parameters<typeof createDriver>[0];
export const DRIVER_NAMES: readonly DriverName[] = ['overlay'];

export interface GlobalOptions {
  home: string;
  driverName: DriverName;
  json: boolean;
}

export class CliContext {
  readonly home: string;
  readonly driverName: DriverName;
  readonly json: boolean;
  readonly signal: AbortSignal;
  readonly index: LayerIndex;
  #driver: Promise<Driver> | undefined;

  constructor(opts: GlobalOptions, signal: AbortSignal) {
    this.home = resolve(opts.home);
    this.driverName = opts.driverName;
    this.json = opts.json;
    this.signal = signal;
    this.index = new LayerIndex(this.home);
  }

  /** The graph driver's own directory: <home>/<driver>, as containers/storage lays out its graph root. */
  get driverHome(): string {
    return join(this.home, this.driverName);
  }

  driver(): Promise<Driver> {
    this.#driver ??= (async () => {
      // No mkdir of the home here: the driver creates it with its own dir, after its
      // checks, and takes it away again when init is refused.
      // Loaded here, not at the top: commands without a store (copy) skip the driver's modules.
      const { createDriver } = await import('../drivers/create-driver.js');
      return createDriver(this.driverName, this.driverHome);
    })();
    return this.#driver;
  }

  /** The parent to diff against: --parent when given ("" means none), else the one the index remembers. */
  async parentOf(id: string, explicit: string | undefined): Promise<string | undefined> {
    if (explicit !== undefined) return explicit === '' ? undefined : explicit;
    return (await this.index.get(id))?.parent;
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
