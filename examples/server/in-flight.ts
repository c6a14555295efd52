// Every request in progress, with the AbortSignal its library calls get: it fires
// when the client goes away before its answer is sent, or when the server shuts
// down. Shutdown aborts them all and waits until each has settled, so the mounts it
// then releases are no longer in use.
import type { ServerResponse } from 'node:http';

export class ClientGoneError extends Error {
  constructor() {
    super('the client went away');
    this.name = 'ClientGoneError';
  }
}

export class ShutdownError extends Error {
  constructor() {
    super('the server is shutting down');
    this.name = 'ShutdownError';
  }
}

export class InFlight {
  readonly #live = new Map<Promise<void>, AbortController>();
  #closing = false;

  get closing(): boolean {
    return this.#closing;
  }

  /** Runs the handler with a signal tied to the response and to shutdown. */
  track(res: ServerResponse, handler: (signal: AbortSignal) => Promise<void>): Promise<void> {
    const controller = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) controller.abort(new ClientGoneError());
    });
    if (this.#closing) controller.abort(new ShutdownError());
    const done = handler(controller.signal).finally(() => this.#live.delete(done));
    this.#live.set(done, controller);
    return done;
  }

  /** Refuses nothing by itself: callers check `closing` to answer 503 to new requests. */
  async abortAll(): Promise<void> {
    this.#closing = true;
    for (const controller of this.#live.values()) controller.abort(new ShutdownError());
    await Promise.allSettled([...this.#live.keys()]);
  }
}
