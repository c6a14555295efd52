// A layer tar in a file, given by its path rather than as a stream. The apply then
// reads it inside its native job (native/layer_file_reader.h): a plain tar or a
// .tar.gz from a regular file goes from the page cache to the tar parser without a
// JS stream, a JS buffer or the JS thread in between, and gzip is inflated on a
// thread of the job, beside the apply. Anything else (zstd, a pipe, a FIFO, a
// character device) is streamed, decompressed by lib/archive/compression.ts.
import { open, type FileHandle } from 'node:fs/promises';
import { InvalidOptionError } from '../errors.js';
import type { LayerFileSource } from '../types.js';
import { detectFormat, type LayerFormat } from './compression.js';

const SNIFF_BYTES = 6;

/** Whether a diff source is a layer file (LayerFileSource) rather than a stream or chunks. */
export function isLayerFile(source: unknown): source is LayerFileSource {
  return typeof source === 'object' && source !== null && (source as { kind?: unknown }).kind === 'layer-file' && typeof (source as { path?: unknown }).path === 'string';
}

export class LayerFile implements LayerFileSource {
  readonly kind = 'layer-file';
  /** The path of the layer file (a plain tar, .tar.gz or .tar.zst, by its first bytes). */
  readonly path: string;

  constructor(path: string) {
    if (typeof path !== 'string' || path === '' || path.includes('\0')) throw new InvalidOptionError('a LayerFile needs a non-empty path');
    this.path = path;
  }

  /**
   * Its format, by its first bytes (an xz or bzip2 file is refused: ERR_OGD_INVALID_ARCHIVE);
   * undefined when it is not a regular file (a pipe is not read ahead of the apply).
   */
  async format(): Promise<LayerFormat | undefined> {
    const opened = await openLayerFile(this);
    await opened.handle.close();
    return opened.format;
  }
}

export interface OpenedLayerFile {
  handle: FileHandle;
  /** By its first bytes; undefined for what is not a regular file (read by openLayer as a stream). */
  format: LayerFormat | undefined;
  /** A regular file of a plain tar or gzip: the native job reads it itself. */
  native: boolean;
  /** Its size in bytes (a regular file's). */
  size: number | undefined;
}

/** Opens `file` and tells how it is to be read; the caller closes `handle`. */
export async function openLayerFile(file: LayerFileSource): Promise<OpenedLayerFile> {
  const handle = await open(file.path, 'r');
  try {
    const st = await handle.stat();
    if (!st.isFile()) return { handle, format: undefined, native: false, size: undefined };
    const head = Buffer.alloc(SNIFF_BYTES);
    const { bytesRead } = await handle.read(head, 0, SNIFF_BYTES, 0);
    const format = detectFormat(head.subarray(0, bytesRead));
    return { handle, format, native: format !== 'zstd', size: st.size };
  } catch (err) {
    await handle.close();
    throw err;
  }
}
