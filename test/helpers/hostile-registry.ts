// A tiny registry on 127.0.0.1 that misbehaves on purpose, for the tests of a bounded
// pull (test/pull-hostile.test.ts). It serves one image, test/img:latest — a manifest
// and a config it makes from the layers it is given — and answers each layer blob the
// way that layer says: its real bytes, bytes that never end, a stall or an early close
// after some bytes, or its bytes after a test-controlled gate. It counts the requests
// and the bytes it sent, and closes every connection when the test ends.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { TestContext } from 'node:test';

export type BlobBehaviour =
  /** The bytes, as a registry sends them. */
  | { kind: 'serve' }
  /** Random bytes forever, whatever the size says. */
  | { kind: 'endless' }
  /** The bytes, then random bytes forever (no Content-Length). */
  | { kind: 'overrun' }
  /** `after` bytes, then nothing (the connection stays open). */
  | { kind: 'stall'; after: number }
  /** `after` bytes, then the connection is closed. */
  | { kind: 'close'; after: number }
  /** The bytes once `gate` resolves (headers go out at once). */
  | { kind: 'gated'; gate: Promise<void> };

export interface HostileLayer {
  /** The blob's bytes (its digest is theirs); for 'endless' only their digest matters. */
  bytes: Buffer;
  /** The uncompressed tar's digest for the config's diff_ids; default the blob's (an uncompressed layer). */
  diffId?: string;
  /** The size the manifest declares; default the real one. */
  declaredSize?: number;
  mediaType?: string;
  behaviour?: BlobBehaviour;
  /** Runs before the blob's first byte is sent (to fill a disk, say). */
  onRequest?: () => Promise<void> | void;
}

export interface HostileRequest {
  method: string;
  url: string;
  /** Body bytes sent in answer. */
  sent: number;
  /** The offset a Range request asked for (blobs served whole or gated). */
  range?: number;
}

export interface HostileRegistry {
  /** "127.0.0.1:PORT" */
  host: string;
  /** docker://HOST/test/img:latest */
  ref: string;
  requests: HostileRequest[];
  /** The digests of the layer blobs, bottom first. */
  layerDigests: string[];
  /** Resolves when every response is over (sent, or its connection closed by the client). */
  idle(): Promise<void>;
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export async function startHostileRegistry(t: TestContext, layers: HostileLayer[]): Promise<HostileRegistry> {
  const layerDigests = layers.map((l) => sha256(l.bytes));
  const config = Buffer.from(
    JSON.stringify({ architecture: process.arch === 'x64' ? 'amd64' : process.arch, os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l, i) => l.diffId ?? layerDigests[i]) }, config: {} }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: layers.map((l, i) => ({ mediaType: l.mediaType ?? 'application/vnd.oci.image.layer.v1.tar', digest: layerDigests[i], size: l.declaredSize ?? l.bytes.length })),
    }),
  );
  const requests: HostileRequest[] = [];
  const sockets = new Set<Socket>();
  const answering = new Set<ServerResponse>();

  const handle = async (req: IncomingMessage, res: ServerResponse, record: HostileRequest) => {
    const url = req.url ?? '';
    if (url === '/v2/') {
      res.end('{}');
      return;
    }
    if (url.startsWith('/v2/test/img/manifests/')) {
      res.writeHead(200, { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json', 'Content-Length': manifest.length });
      record.sent = manifest.length;
      res.end(req.method === 'HEAD' ? undefined : manifest);
      return;
    }
    const digest = url.slice('/v2/test/img/blobs/'.length);
    if (url.startsWith('/v2/test/img/blobs/') && digest === sha256(config)) {
      res.writeHead(200, { 'Content-Length': config.length });
      record.sent = config.length;
      res.end(config);
      return;
    }
    const i = layerDigests.indexOf(digest);
    if (i < 0) {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown' }] }));
      return;
    }
    const layer = layers[i]!;
    await layer.onRequest?.();
    const behaviour = layer.behaviour ?? { kind: 'serve' };
    const send = (chunk: Buffer): Promise<void> => {
      record.sent += chunk.length;
      return new Promise((resolve) => (res.write(chunk) ? resolve() : res.once('drain', resolve)));
    };
    const declared = layer.declaredSize ?? layer.bytes.length;
    switch (behaviour.kind) {
      case 'serve':
      case 'gated': {
        // A Range of "bytes=N-" is honoured (206), as a registry does for a resumed download.
        const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
        record.range = from;
        const body = layer.bytes.subarray(from);
        const headers = { 'Content-Length': body.length, 'Content-Type': 'application/octet-stream' };
        if (from > 0) res.writeHead(206, { ...headers, 'Content-Range': `bytes ${from}-${layer.bytes.length - 1}/${layer.bytes.length}` });
        else res.writeHead(200, headers);
        if (behaviour.kind === 'gated') {
          res.flushHeaders();
          await behaviour.gate;
        }
        await send(body);
        res.end();
        return;
      }
      case 'endless':
      case 'overrun': {
        res.writeHead(200, behaviour.kind === 'endless' ? { 'Content-Length': declared } : {});
        if (behaviour.kind === 'overrun') await send(layer.bytes);
        const chunk = randomBytes(64 << 10);
        while (!res.destroyed) await send(chunk);
        return;
      }
      case 'stall':
      case 'close':
        res.writeHead(200, { 'Content-Length': declared, 'Content-Type': 'application/octet-stream' });
        await send(layer.bytes.subarray(0, behaviour.after));
        if (behaviour.kind === 'close') res.socket?.end(); // after what was written: a FIN short of Content-Length
        return; // a stall: the response is never ended; the test's end closes it
    }
  };

  const server = createServer((req, res) => {
    const record: HostileRequest = { method: req.method ?? '', url: req.url ?? '', sent: 0 };
    requests.push(record);
    answering.add(res);
    res.on('close', () => answering.delete(res));
    res.on('error', () => {});
    handle(req, res, record).catch(() => res.destroy());
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    host,
    ref: `docker://${host}/test/img:latest`,
    requests,
    layerDigests,
    async idle() {
      while (answering.size > 0) await new Promise((resolve) => setTimeout(resolve, 10));
    },
  };
}
