// A slow link in front of a real server, for tests that must act while a download
// is under way: an HTTP proxy on 127.0.0.1 that forwards every request to `upstream`
// and sends blob bodies (GET …/blobs/…) at `bytesPerSecond`. It records each blob
// response, so a test can see that its client hung up before the end.
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

export interface BlobTransfer {
  path: string;
  bytesSent: number;
  /** The client's connection closed before the body's end. */
  cutShort: boolean;
  /** The response is over (finished or cut short). */
  over: boolean;
}

export interface ThrottleProxy {
  /** "127.0.0.1:PORT" */
  host: string;
  transfers: BlobTransfer[];
}

/** Slices sent per pause: small enough that the rate is smooth at a few MiB/s. */
const SLICE = 64 * 1024;

export async function startThrottleProxy(t: TestContext, upstream: string, bytesPerSecond: number): Promise<ThrottleProxy> {
  const transfers: BlobTransfer[] = [];
  const server = createServer((req, res) => {
    const headers: IncomingHttpHeaders = { ...req.headers, host: upstream };
    const [hostname, port] = upstream.split(':');
    const up = request({ hostname, port: Number(port), method: req.method, path: req.url, headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      if (!(req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? ''))) {
        upRes.pipe(res);
        return;
      }
      const transfer: BlobTransfer = { path: req.url ?? '', bytesSent: 0, cutShort: false, over: false };
      transfers.push(transfer);
      res.on('close', () => {
        transfer.over = true;
        if (!res.writableFinished) {
          transfer.cutShort = true;
          upRes.destroy();
        }
      });
      (async () => {
        for await (const chunk of upRes as AsyncIterable<Buffer>) {
          for (let at = 0; at < chunk.length; at += SLICE) {
            if (res.destroyed) return;
            const slice = chunk.subarray(at, at + SLICE);
            res.write(slice);
            transfer.bytesSent += slice.length;
            await new Promise((r) => setTimeout(r, (slice.length / bytesPerSecond) * 1000));
          }
        }
        res.end();
      })().catch(() => res.destroy());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { host: `127.0.0.1:${(server.address() as AddressInfo).port}`, transfers };
}
