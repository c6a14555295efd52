// The CLI's own record of the layers it made: each layer's parent (so diff, changes and
// import of a child can omit --parent), its kind, its label, its applied size and how
// many `ogd mount`s hold it. The driver keeps none of this across processes, so it lives
// in <home>/layers.json, rewritten atomically (write a temp file, rename over) under a
// small lock file, so a crash or a concurrent ogd never leaves a torn index.
import { link, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export type LayerKind = 'image' | 'container';

export interface LayerRecord {
  parent?: string;
  kind: LayerKind;
  label?: string;
  /** ISO time of creation. */
  created: string;
  /** Bytes of content applied by import/apply-diff. */
  size?: number;
  /** Mounts taken by `ogd mount` and not yet released by `ogd unmount`. */
  mounts?: number;
}

interface IndexFile {
  version: 1;
  layers: Record<string, LayerRecord>;
}

const LOCK_WAIT_MS = 10_000;

export class LayerIndex {
  readonly path: string;
  readonly #lockPath: string;

  constructor(home: string) {
    this.path = join(home, 'layers.json');
    this.#lockPath = join(home, 'layers.json.lock');
  }

  async all(): Promise<Record<string, LayerRecord>> {
    return (await this.#read()).layers;
  }

  async get(id: string): Promise<LayerRecord | undefined> {
    return (await this.#read()).layers[id];
  }

  /** Read-modify-write under the lock; `change` edits the layers map in place. */
  async update(change: (layers: Record<string, LayerRecord>) => void): Promise<void> {
    await this.#withLock(async () => {
      const file = await this.#read();
      change(file.layers);
      const tmp = `${this.path}.${process.pid}.tmp`;
      await writeFile(tmp, JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });
      await rename(tmp, this.path);
    });
  }

  async #read(): Promise<IndexFile> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, layers: {} };
      throw err;
    }
    const parsed = JSON.parse(text) as Partial<IndexFile>;
    // Object.create(null): layer ids such as "__proto__" must stay plain keys.
    const layers: Record<string, LayerRecord> = Object.create(null) as Record<string, LayerRecord>;
    Object.assign(layers, parsed.layers ?? {});
    return { version: 1, layers };
  }

  async #withLock<T>(body: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      // link(2) publishes the lock with its owner's pid already in it: no torn lock file.
      const mine = `${this.#lockPath}.${process.pid}`;
      await writeFile(mine, String(process.pid), { mode: 0o600 });
      try {
        await link(mine, this.#lockPath);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if (await this.#lockIsStale()) {
          await rm(this.#lockPath, { force: true });
          continue;
        }
        if (Date.now() > deadline) throw new Error(`the layer index ${this.path} is locked by another ogd process`);
        await sleep(20);
      } finally {
        await rm(mine, { force: true });
      }
    }
    try {
      return await body();
    } finally {
      await rm(this.#lockPath, { force: true });
    }
  }

  // A lock whose owner died (kill -9, power loss) must not block the store forever.
  async #lockIsStale(): Promise<boolean> {
    const pid = Number(await readFile(this.#lockPath, 'utf8').catch(() => ''));
    if (!Number.isInteger(pid) || pid <= 0) return true;
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  }
}
