// The containers this server holds mounted. A container is a store layer of kind
// 'container' on an image's top layer; the server takes one mount reference per
// container (the store counts it for this process) and gives it back on delete; at
// shutdown the store's cleanup() releases them all. A container id from a request is only ever looked up: the library
// validates it (ERR_OGD_INVALID_ID), and a layer that is not a container (an image's
// layer, which a write would change under every container on it) is refused.
import { randomBytes } from 'node:crypto';
import type { Store } from 'overlay-graphdriver';
import { RequestError } from './http-io.js';
import type { RootRunner, RunRequest, RunResult } from './run-in-root.js';

interface Held {
  id: string;
  rootfs: string;
  /** Runs in progress: the mount stays while one uses it. */
  runs: number;
  removing: boolean;
}

export interface ContainerInfo {
  id: string;
  /** The image layer it stands on. */
  parent: string | null;
  running: number;
}

export class Containers {
  readonly #store: Store;
  readonly #runner: RootRunner;
  /** Promises, so two requests for a container not yet mounted share one mount. */
  readonly #held = new Map<string, Promise<Held>>();

  constructor(store: Store, runner: RootRunner) {
    this.#store = store;
    this.#runner = runner;
  }

  /** A new container on the image's top layer, mounted. */
  async create(image: string): Promise<ContainerInfo> {
    const info = await this.#store.image(image);
    // 32 random bytes in hex, the id shape podman and containers/storage use.
    const id = randomBytes(32).toString('hex');
    await this.#store.create(id, { kind: 'container', ...(info.topLayer !== null ? { parent: info.topLayer } : {}) });
    const mounting = this.#mount(id);
    this.#held.set(id, mounting);
    try {
      await mounting;
    } catch (err) {
      this.#held.delete(id);
      await this.#store.remove(id).catch(() => undefined);
      throw err;
    }
    return { id, parent: info.topLayer, running: 0 };
  }

  async list(): Promise<ContainerInfo[]> {
    const layers = await this.#store.list();
    const out: ContainerInfo[] = [];
    for (const l of layers.filter((layer) => layer.kind === 'container')) {
      const held = this.#held.has(l.id) ? await this.#held.get(l.id)!.catch(() => undefined) : undefined;
      out.push({ id: l.id, parent: l.parent ?? null, running: held?.runs ?? 0 });
    }
    return out;
  }

  /** Runs a command in the container's root; mounts a container of the store this server does not hold yet. */
  async run(id: string, req: RunRequest, signal: AbortSignal): Promise<RunResult> {
    const held = await this.#get(id);
    if (held.removing) throw notAContainer(id);
    held.runs++;
    try {
      return await this.#runner.run(held.rootfs, req, signal);
    } finally {
      held.runs--;
    }
  }

  async changes(id: string, signal: AbortSignal) {
    await this.#checkContainer(id);
    return this.#store.changes(id, { signal });
  }

  async commit(id: string, name: string, signal: AbortSignal) {
    await this.#checkContainer(id);
    return this.#store.commit(id, name, { signal, createdBy: 'example server: commit' });
  }

  /** Unmounts (if held) and removes the container; refused while a run uses it. */
  async remove(id: string): Promise<void> {
    await this.#checkContainer(id);
    const holding = this.#held.get(id);
    if (holding !== undefined) {
      const held = await holding;
      if (held.runs > 0) throw new RequestError(409, 'ERR_CONTAINER_BUSY', `container ${id} is running a command`);
      if (held.removing) throw notAContainer(id);
      held.removing = true;
      try {
        await this.#store.unmount(id);
      } catch (err) {
        held.removing = false;
        throw err;
      }
      this.#held.delete(id);
    }
    await this.#store.remove(id);
  }

  async #get(id: string): Promise<Held> {
    let holding = this.#held.get(id);
    if (holding === undefined) {
      holding = this.#checkContainer(id).then(() => this.#mount(id));
      this.#held.set(id, holding);
      holding.catch(() => this.#held.delete(id));
    }
    return holding;
  }

  async #mount(id: string): Promise<Held> {
    return { id, rootfs: await this.#store.mount(id), runs: 0, removing: false };
  }

  /** The library validates the id; the server refuses layers that are not containers. */
  async #checkContainer(id: string): Promise<void> {
    const layer = await this.#store.layer(id);
    if (layer.kind !== 'container') throw notAContainer(id);
  }
}

function notAContainer(id: string): RequestError {
  return new RequestError(404, 'ERR_NOT_A_CONTAINER', `${JSON.stringify(id)} is not a container`);
}
