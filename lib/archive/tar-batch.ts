// Gathers the small pieces of a tar stream (headers, small contents, padding) in
// one slab, written in place, instead of a Buffer per piece joined by a concat: at
// 100k entries the per-piece Buffers and their garbage cost more than the bytes.
// Slabs start zeroed and each byte is written at most once, so padding and the
// unused fields of headers cost nothing to write.
import { writeHeader, type TarEntryHeader } from './tar-header.js';

const slabSize = 1024 * 1024;

export class TarBatch {
  private slab = Buffer.alloc(slabSize);
  /** First byte of the slab not yet handed out by take(). */
  private start = 0;
  private pos = 0;
  /** Filled parts of earlier slabs not yet handed out. */
  private full: Buffer[] = [];
  private fullBytes = 0;

  /** Bytes gathered since the last take(). */
  get length(): number {
    return this.fullBytes + this.pos - this.start;
  }

  private room(n: number): void {
    if (this.pos + n <= this.slab.length) return;
    if (this.pos > this.start) {
      this.full.push(this.slab.subarray(this.start, this.pos));
      this.fullBytes += this.pos - this.start;
    }
    this.slab = Buffer.alloc(Math.max(slabSize, n));
    this.start = this.pos = 0;
  }

  bytes(b: Buffer): void {
    if (b.length === 0) return;
    this.room(b.length);
    b.copy(this.slab, this.pos);
    this.pos += b.length;
  }

  zeros(n: number): void {
    if (n === 0) return;
    this.room(n);
    this.pos += n; // already zero
  }

  /** The entry's header, as encodeHeader encodes it. */
  header(h: TarEntryHeader): void {
    writeHeader(h, (n) => {
      this.room(n);
      const at = this.pos;
      this.pos += n;
      return [this.slab, at];
    });
  }

  /** What was gathered since the last take, as one Buffer the batch never writes into again. */
  take(): Buffer {
    const tail = this.slab.subarray(this.start, this.pos);
    this.start = this.pos;
    if (this.full.length === 0) return tail;
    const out = Buffer.concat([...this.full, tail], this.fullBytes + tail.length);
    this.full = [];
    this.fullBytes = 0;
    return out;
  }
}
