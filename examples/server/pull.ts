// POST /images/pull: the pull's progress streamed to the client as JSON lines
// (application/x-ndjson), one object per line:
//   {"type":"progress","layer":0,"phase":"downloading","bytes":1048576,"totalBytes":4194304}
//   {"type":"done","image":{...}}            or   {"type":"error","code":"…","message":"…"}
// A client that goes away aborts the pull through the request's AbortSignal; the
// library then removes the half-applied layer (verified blobs and partial downloads
// stay in the store's blob cache, for the next pull to resume).
import type { ServerResponse } from 'node:http';
import { parseReference, type LayerProgress, type Store, type StorePullResult } from 'overlay-graphdriver';
import { errorBody, RequestError } from './http-io.js';

export interface PullPolicy {
  /** Registries ("host:port") reached over plain HTTP or unverified TLS, as podman's registries.conf `insecure`. */
  insecureRegistries: ReadonlySet<string>;
}

export type PullLine = ({ type: 'progress' } & LayerProgress) | { type: 'done'; image: StorePullResult } | { type: 'error'; code: string; message: string };

export async function streamPull(store: Store, ref: string, policy: PullPolicy, res: ServerResponse, signal: AbortSignal, log: (line: string) => void): Promise<void> {
  // Checked before the 200 goes out, so a bad reference is a plain 400 with its code.
  const parsed = parseReference(ref);
  // oci:DIR would let a client read any directory of the server's machine.
  if (parsed.transport !== 'docker') throw new RequestError(400, 'ERR_REQUEST_TRANSPORT', `only docker:// references are pulled here, not ${JSON.stringify(ref)}`);

  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  res.flushHeaders();
  const send = (line: PullLine) => !res.destroyed && res.write(`${JSON.stringify(line)}\n`);
  // A slow reader gets the phases but not every byte count: downloading lines are
  // dropped while the socket's buffer is full, so the server's memory stays bounded.
  let draining = false;
  res.on('drain', () => (draining = false));
  const onProgress = (p: LayerProgress) => {
    if (p.phase === 'downloading' && draining) return;
    if (!send({ type: 'progress', ...p })) draining = true;
  };

  log(`pull ${ref}: started`);
  try {
    const image = await store.pull(ref, { signal, onProgress, tlsVerify: !policy.insecureRegistries.has(parsed.registry) });
    log(`pull ${ref}: done, image ${image.id}`);
    send({ type: 'done', image });
  } catch (err) {
    const { body } = errorBody(err);
    log(signal.aborted ? `pull ${ref}: aborted (${String(signal.reason?.message ?? signal.reason)})` : `pull ${ref}: failed: ${body.code} ${body.message}`);
    send({ type: 'error', ...body });
  }
  res.end();
}
