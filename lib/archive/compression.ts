// Layer compression, one place for the CLI's import and the image transport (pull, push).
// Input as people and registries have it: a plain tar, a .tar.gz or a .tar.zst, from a
// file, a pipe or a socket, told apart by the first bytes (not a file name or a media
// type, which may lie). gzip goes through node:zlib. zstd goes through node:zlib where
// Node has it (>= 22.15) and otherwise through the `zstd` program, which Debian and most
// distributions ship; without either, zstd is refused with ERR_OGD_NOT_SUPPORTED.
import { spawn } from 'node:child_process';
import { Duplex, PassThrough, Readable, pipeline } from 'node:stream';
import * as zlib from 'node:zlib';
import { InvalidArchiveError, NotSupportedError } from '../errors.js';

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

/** Reads the first bytes of `input`, then returns its uncompressed tar stream and the format found. */
export async function openLayer(input: AsyncIterable<Buffer>): Promise<{ format: LayerFormat; tar: Readable }> {
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
  if (format === 'tar') return { format, tar: whole };
  const decoder = format === 'gzip' ? zlib.createGunzip() : zstdDecoder();
  // pipeline destroys the decoder with the input's error (and vice versa), so the
  // consumer sees a truncated or corrupt stream as an error, never as a short tar.
  return { format, tar: pipeline(whole, decoder, () => {}) as Readable };
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
      if (code !== 0) throw new InvalidArchiveError(`zstd could not ${what}: ${stderr.trim() || `exit ${code}`}`);
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
