// Tree walks issue many small fs calls; running a few dozen at once keeps libuv's
// thread pool busy (a fraction of the cost of one-at-a-time awaits) without
// flooding it. The gate also turns an aborted signal into an AbortError at the
// next call, so a long walk stops promptly.
//
// A walk may queue hundreds of thousands of calls (every entry of a wide tree waits
// here at once), so the queue is a ring read by index (Array#shift is O(n) there),
// and an abort settles every waiter with one shared error: building a stack trace
// per waiter cost over a minute for 200k entries and kept Ctrl-C from working.
import { AbortError } from '../errors.js';

export class IoGate {
  private active = 0;
  private waiting: Array<() => void> = [];
  private head = 0;
  private aborted: AbortError | undefined;

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
      this.next();
    }
  }

  private next(): void {
    if (this.head < this.waiting.length) {
      const resolve = this.waiting[this.head]!;
      this.waiting[this.head++] = noop; // let the closure go
      if (this.head > 1024 && this.head * 2 > this.waiting.length) {
        this.waiting = this.waiting.slice(this.head);
        this.head = 0;
      }
      resolve();
    } else {
      this.active--;
    }
  }

  checkAborted(): void {
    if (this.signal?.aborted) throw (this.aborted ??= new AbortError(undefined, { cause: this.signal.reason }));
  }
}

function noop(): void {}
