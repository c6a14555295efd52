// Tree walks issue many small fs calls; running a few dozen at once keeps libuv's
// thread pool busy (a fraction of the cost of one-at-a-time awaits) without
// flooding it. The gate also turns an aborted signal into an AbortError at the
// next call, so a long walk stops promptly.
import { AbortError } from '../errors.js';

export class IoGate {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly limit: number,
    private readonly signal?: AbortSignal,
  ) {}

  /** Runs `op` when a slot is free. */
  async run<T>(op: () => Promise<T>): Promise<T> {
    this.checkAborted();
    if (this.active >= this.limit) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.active++;
    }
    try {
      this.checkAborted();
      return await op();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }

  checkAborted(): void {
    if (this.signal?.aborted) throw new AbortError(undefined, { cause: this.signal.reason });
  }
}
