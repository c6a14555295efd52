// Where the tests send what a writer writes to a file descriptor (writeChanges,
// writeTree, driver.writeDiff): a fresh file opened with given flags, or a pipe that
// libuv made non-blocking (a child's stdin), so writers meet EAGAIN and O_APPEND.
import { spawn } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** What `write(fd)` writes to a fresh file opened with `flags`, and what it resolved to. */
export async function toFile(path: string, flags: string, write: (fd: number) => Promise<number>): Promise<[Buffer, number]> {
  const file = await open(path, flags);
  let n: number;
  try {
    n = await write(file.fd);
  } finally {
    await file.close();
  }
  return [await readFile(path), n];
}

/** What `write(fd)` writes into the stdin of a `cat` child: a pipe libuv made non-blocking. */
export async function throughPipe(write: (fd: number) => Promise<number>): Promise<[Buffer, number]> {
  const cat = spawn('cat', [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const piped = bytesOf(cat.stdout);
  const fd = (cat.stdin as unknown as { _handle: { fd: number } })._handle.fd;
  let n: number;
  try {
    n = await write(fd);
  } finally {
    cat.stdin.end();
  }
  return [await piped, n];
}
