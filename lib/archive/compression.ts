// Layer compression, one place for the CLI's import and the image transport (pull, push).
// Input as people and registries have it: a plain tar, a .tar.gz or a .tar.zst, from a
// file, a pipe or a socket, told apart by the first bytes (not a file name or a media
// type, which may lie). gzip goes through node:zlib. zstd goes through node:zlib where
// Node has it (>= 22.15) and otherwise through the `zstd` program, which Debian and most
// distributions ship; without either, zstd is refused with ERR_OGD_NOT_SUPPORTED.
import { spawn } from 'node:child_process';
import { Duplex, PassThrough, Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { GraphDriverError, InvalidArchiveError, NotSupportedError, UnsafeLayerError } from '../errors.js';

export type LayerFormat = 'tar' | 'gzip' | 'zstd';

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const BZIP2_MAGIC = [0x42, 0x5a, 0x68];
const SNIFF_BYTES = 6;

function startsWith(head: Buffer, magic: number[]): boolean {
  return head.length >= magic.length && magic.every((b, i) => head[i] === b);
}

export function detectFormat(head: Buffer): LayerFormat {
  if (startsWith(head, GZIP_MAGIC)) return 'gzip';
  if (startsWith(head, ZSTD_MAGIC)) return 'zstd';
  if (startsWith(head, XZ_MAGIC)) throw new InvalidArchiveError('the layer is xz-compressed; only tar, gzip and zstd are supported (xz -d it first)');
  if (startsWith(head, BZIP2_MAGIC)) throw new InvalidArchiveError('the layer is bzip2-compressed; only tar, gzip and zstd are supported (bunzip2 it first)');
  return 'tar';
}

export interface OpenedLayer {
  format: LayerFormat;
  /** The uncompressed tar. A truncated or corrupt compressed stream makes it fail with ERR_OGD_INVALID_ARCHIVE. */
  tar: Readable;
  /**
   * What really went wrong, once the consumer of `tar` failed with `err`. A corrupt
   * compressed stream first shows up as garbage to the tar reader ("bad checksum at
   * offset N"); gzip only notices at a bad code or its CRC at the end. So on a tar
   * error the rest of the input is decompressed (and dropped) to ask the decompressor,
   * and its error, when it has one, is the one to report.
   */
  explain(err: unknown): Promise<unknown>;
  /** Stops the decompressor (and a zstd program) once the caller is done. */
  close(): void;
}

/** Reads the first bytes of `input`, then returns its uncompressed tar stream and the format found. */
export async function openLayer(input: AsyncIterable<Buffer>): Promise<OpenedLayer> {
  const iterator = input[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let length = 0;
  while (length < SNIFF_BYTES) {
    const next = await iterator.next();
    if (next.done === true) break;
    chunks.push(next.value);
    length += next.value.length;
  }
  const head = Buffer.concat(chunks);
  const format = detectFormat(head);
  const whole = Readable.from(
    (async function* () {
      if (head.length > 0) yield head;
      for (;;) {
        const next = await iterator.next();
        if (next.done === true) return;
        yield next.value;
      }
    })(),
    { objectMode: false },
  );
  if (format === 'tar') return { format, tar: whole, explain: async (err) => err, close: () => void whole.destroy() };

  // Large output chunks: each one is a hand-over to the apply job (the default 16 KiB makes 4x as many).
  const decoder = format === 'gzip' ? zlib.createGunzip({ chunkSize: 256 << 10 }) : zstdDecoder();
  const tar = new PassThrough();
  // Not pipeline(): the consumer giving up on `tar` must not stop the decoder, which
  // explain() may still ask about the rest of the input.
  let decodeError: unknown;
  let inputError: unknown;
  let decoded = false;
  decoder.on('error', (err) => {
    decodeError ??= decompressionError(format, err);
    tar.destroy(decodeError as Error);
  });
  decoder.on('end', () => (decoded = true));
  whole.on('error', (err) => {
    inputError ??= err;
    tar.destroy(err);
    decoder.destroy();
  });
  // The error is kept in `tar` for its consumer, who may start reading only later (after creating the layer).
  tar.on('error', () => {});
  whole.pipe(decoder).pipe(tar);
  return {
    format,
    tar,
    async explain(err) {
      if (decodeError === undefined && inputError === undefined && !decoded && (err instanceof InvalidArchiveError || err instanceof UnsafeLayerError)) {
        await new Promise<void>((resolve) => {
          decoder.unpipe(tar);
          decoder.once('end', resolve).once('error', () => resolve());
          whole.once('error', () => resolve());
          decoder.resume();
        });
      }
      if (decodeError === undefined) return err;
      (decodeError as { cause?: unknown }).cause ??= err;
      return decodeError;
    },
    close() {
      whole.destroy();
      decoder.destroy();
    },
  };
}

/** A decompressor's failure in the words of what happened to the layer file. */
export function decompressionError(format: 'gzip' | 'zstd', err: Error): Error {
  if (err instanceof GraphDriverError) return err;
  const detail = err.message.replace(/\s+/g, ' ').trim();
  if (/unexpected end of file|premature end|truncated/i.test(detail)) {
    return new InvalidArchiveError(`the ${format} stream ends early: the layer file is truncated`, { cause: err });
  }
  return new InvalidArchiveError(`the ${format} stream is corrupt (${detail}): the layer file is damaged`, { cause: err });
}

function zstdDecoder(): Duplex {
  const native = (zlib as unknown as { createZstdDecompress?: () => Duplex }).createZstdDecompress;
  if (native !== undefined) return native();
  return zstdProgram(['-dcq'], 'decompress the layer');
}

/** What push writes a layer blob as. */
export type Compression = 'gzip' | 'zstd' | 'none';

/** A stream compressing its input as `format` ('none' passes it through). */
export function createCompressor(format: Compression): Duplex {
  if (format === 'gzip') return zlib.createGzip({ level: zlib.constants.Z_DEFAULT_COMPRESSION });
  if (format === 'zstd') {
    const native = (zlib as unknown as { createZstdCompress?: () => Duplex }).createZstdCompress;
    return native !== undefined ? native() : zstdProgram(['-cq', '-3'], 'compress the layer');
  }
  return new PassThrough();
}

// The `zstd` program as a duplex stream; a non-zero exit becomes the stream's error.
function zstdProgram(args: string[], what: string): Duplex {
  const child = spawn('zstd', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new NotSupportedError(`zstd is needed to ${what} and this Node has none; install the zstd program`) : err),
    );
    child.on('close', resolve);
  });
  exited.catch(() => {}); // observed below; this only avoids an unhandled rejection
  const readable = Readable.from(
    (async function* () {
      for await (const chunk of child.stdout) yield chunk as Buffer;
      const code = await exited;
      // The program's own words (e.g. "Read error (39) : premature end"); decompressionError() words them for the user.
      if (code !== 0) throw new Error(stderr.replace(/^.*?stdin\S*\s*:\s*/, '').trim() || `zstd exited with ${code}`);
    })(),
    { objectMode: false },
  );
  child.stdin.on('error', () => {}); // EPIPE when zstd exits early; its exit status says why
  const duplex = Duplex.from({ readable, writable: child.stdin });
  // Whoever stops reading early (an abort, a hostile entry) must not leave zstd behind.
  duplex.on('close', () => {
    if (child.exitCode === null) child.kill();
  });
  return duplex;
}
