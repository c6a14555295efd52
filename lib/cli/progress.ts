// A one-line progress bar on stderr for long commands (import, copy, diff). It draws
// only when stderr is a terminal, so piped and scripted runs stay silent and their
// stderr holds nothing but real errors.
import type { WriteStream } from 'node:tty';

export interface ProgressSample {
  entries: number;
  bytes: number;
  /** Bytes expected in all, when known; enables the bar and the ETA. */
  totalBytes?: number;
  /** Bytes done towards totalBytes, when they are not `bytes` (e.g. compressed input read). */
  doneBytes?: number;
}

const REDRAW_MS = 100;
const BAR_WIDTH = 24;

export class ProgressBar {
  readonly #stream: WriteStream | undefined;
  readonly #label: string;
  readonly #started = Date.now();
  #lastDraw = 0;
  #last: ProgressSample = { entries: 0, bytes: 0 };
  #drawn = false;
  #finished = false;

  constructor(label: string, stream: NodeJS.WriteStream = process.stderr) {
    this.#label = label;
    this.#stream = stream.isTTY === true ? (stream as WriteStream) : undefined;
  }

  get enabled(): boolean {
    return this.#stream !== undefined;
  }

  update(sample: Partial<ProgressSample>): void {
    this.#last = { ...this.#last, ...sample };
    if (this.#stream === undefined || this.#finished) return;
    const now = Date.now();
    if (now - this.#lastDraw < REDRAW_MS) return;
    this.#lastDraw = now;
    this.#draw(now);
  }

  /** Erases the bar so the command's own output starts on a clean line; later updates draw nothing. */
  done(): void {
    this.#finished = true;
    if (this.#stream === undefined || !this.#drawn) return;
    this.#stream.write('\r\x1b[2K');
    this.#drawn = false;
  }

  #draw(now: number): void {
    const stream = this.#stream!;
    const seconds = Math.max((now - this.#started) / 1000, 0.001);
    const { entries, bytes, totalBytes } = this.#last;
    const done = this.#last.doneBytes ?? bytes;
    const rate = done / seconds;
    const parts = [this.#label, `${formatCount(entries)} entries`, formatBytes(bytes), `${formatBytes(rate)}/s`];
    let bar = '';
    if (totalBytes !== undefined && totalBytes > 0) {
      const fraction = Math.min(done / totalBytes, 1);
      const filled = Math.round(fraction * BAR_WIDTH);
      bar = `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${Math.floor(fraction * 100)}% `;
      if (rate > 0 && fraction < 1) parts.push(`ETA ${formatDuration((totalBytes - done) / rate)}`);
    }
    const line = bar + parts.join(' · ');
    const width = stream.columns || 80; // a pty may report 0 columns
    stream.write('\r\x1b[2K' + line.slice(0, width - 1));
    this.#drawn = true;
  }
}

/**
 * 1234567 → "1,234,567". Not toLocaleString: its first call loads ICU's locale data,
 * about 20 ms, which is a tenth of a whole `ogd copy` of a small tree.
 */
export function formatCount(n: number): string {
  return String(Math.round(n)).replace(/\B(?=(\d{3})+$)/g, ',');
}

export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  return `${m}m${String(Math.round(seconds - m * 60)).padStart(2, '0')}s`;
}

/**
 * One line per layer of a pull (or blob of a push) on stderr, redrawn in place, only
 * when stderr is a terminal: "layer 2/3 1a2b3c4d5e6f  downloading  12.1 MB / 30.2 MB".
 */
export class LayerBoard {
  readonly #stream: WriteStream | undefined;
  readonly #lines = new Map<string, string>();
  #drawnLines = 0;
  #lastDraw = 0;
  #finished = false;

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.#stream = stream.isTTY === true ? (stream as WriteStream) : undefined;
  }

  /** Sets the line of `key`; `force` redraws now (phase changes), otherwise at most every 100 ms. */
  set(key: string, line: string, force = false): void {
    if (this.#stream === undefined || this.#finished) return;
    this.#lines.set(key, line);
    const now = Date.now();
    if (!force && now - this.#lastDraw < REDRAW_MS) return;
    this.#lastDraw = now;
    this.#draw();
  }

  #draw(): void {
    const stream = this.#stream!;
    const width = stream.columns || 80;
    let out = this.#drawnLines > 0 ? `\x1b[${this.#drawnLines}A` : '';
    for (const line of this.#lines.values()) out += `\r\x1b[2K${line.slice(0, width - 1)}\n`;
    this.#drawnLines = this.#lines.size;
    stream.write(out);
  }

  /**
   * Leaves the last state on screen (the per-layer summary), once: a second call (a
   * finally after the success path's) must not move the cursor up again and draw over
   * what the command printed below the board meanwhile.
   */
  done(): void {
    if (this.#finished) return;
    this.#finished = true;
    if (this.#stream !== undefined && this.#lines.size > 0) this.#draw();
  }
}
