// Tree walks issue many small fs calls; running a few dozen at once keeps libuv's
// thread pool busy (a fraction of the cost of one-at-a-time awaits) without
// flooding it. The gate also turns an aborted signal into an AbortError at the
// next call, so a long walk stops promptly.
// The waiting queue can hold a whole walk's calls: it is a FIFO with O(1) take
// (a head index, compacted now and then), never Array.shift(), which moves every
// waiting element and made a long walk quadratic.
import { AbortError } from '../errors.js';

export class IoGate {
  private active = 0;
  private waiting: Array<(() => void) | undefined> = [];
  private head = 0;

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
      const next = this.take();
      if (next) next();
      else this.active--;
    }
  }

  private take(): (() => void) | undefined {
    if (this.head === this.waiting.length) return undefined;
    const next = this.waiting[this.head];
    this.waiting[this.head++] = undefined;
    if (this.head === this.waiting.length) {
      this.waiting = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.waiting.length) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
    return next;
  }

  checkAborted(): void {
    if (this.signal?.aborted) throw new AbortError(undefined, { cause: this.signal.reason });
  }
}
