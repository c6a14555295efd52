// The HTTP API, on node:http alone. Routes (JSON bodies and answers; errors are
// {"code","message"} with the status examples/server/http-io.ts gives each code):
//   GET    /images                      the store's images
//   POST   /images/pull     {ref}       pull docker://…; progress as JSON lines (pull.ts)
//   DELETE /images/NAME                 remove an image (NAME URL-encoded: repo/name:tag has slashes)
//   GET    /containers                  container layers, with the runs in progress
//   POST   /containers      {image}     a new container on the image, mounted → 201 {id, parent}
//   POST   /containers/ID/run {argv, timeoutMs?}   the command in the container's root → {exitCode, stdout, …}
//   GET    /containers/ID/changes       [{path, kind: A|C|D}]
//   POST   /containers/ID/commit {name} the container's changes as image NAME → 201 image
//   DELETE /containers/ID               unmount and remove
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Store } from 'overlay-graphdriver';
import { Containers } from './containers.js';
import { InFlight } from './in-flight.js';
import { badRequest, readJsonObject, RequestError, sendError, sendJson, stringField } from './http-io.js';
import { streamPull, type PullPolicy } from './pull.js';
import type { RootRunner } from './run-in-root.js';

export interface AppOptions extends PullPolicy {
  runner: RootRunner;
  log: (line: string) => void;
}

export interface App {
  server: Server;
  /** Stops taking requests, aborts those in progress, then closes the store, which releases every mount this process holds. */
  shutdown(): Promise<void>;
}

/** A run may not outlast this (ms) unless the request asks for less. */
const MAX_RUN_TIMEOUT = 10 * 60_000;
const DEFAULT_RUN_TIMEOUT = 60_000;

export function createApp(store: Store, opts: AppOptions): App {
  const containers = new Containers(store, opts.runner);
  const inFlight = new InFlight();

  async function route(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    const path = pathSegments(req.url ?? '/');
    const method = req.method ?? 'GET';
    const [top, id, action] = path;
    const is = (m: string, length: number) => method === m && path.length === length;

    if (top === 'images') {
      if (is('GET', 1)) return sendJson(res, 200, await store.images());
      if (is('POST', 2) && id === 'pull') return streamPull(store, stringField(await readJsonObject(req), 'ref'), opts, res, signal, opts.log);
      if (is('DELETE', 2)) {
        await store.removeImage(id!);
        return void res.writeHead(204).end();
      }
    }
    if (top === 'containers') {
      if (is('GET', 1)) return sendJson(res, 200, await containers.list());
      if (is('POST', 1)) return sendJson(res, 201, await containers.create(stringField(await readJsonObject(req), 'image')));
      if (is('DELETE', 2)) {
        await containers.remove(id!);
        return void res.writeHead(204).end();
      }
      if (is('POST', 3) && action === 'run') {
        const body = await readJsonObject(req);
        return sendJson(res, 200, await containers.run(id!, { argv: argvField(body), timeoutMs: timeoutField(body) }, signal));
      }
      if (is('GET', 3) && action === 'changes') return sendJson(res, 200, await containers.changes(id!, signal));
      if (is('POST', 3) && action === 'commit') return sendJson(res, 201, await containers.commit(id!, stringField(await readJsonObject(req), 'name'), signal));
    }
    throw new RequestError(404, 'ERR_REQUEST_ROUTE', `no route ${method} ${req.url ?? ''}`);
  }

  const server = createServer((req, res) => {
    if (inFlight.closing) {
      res.setHeader('connection', 'close');
      return sendError(res, new RequestError(503, 'ERR_SHUTTING_DOWN', 'the server is shutting down'));
    }
    void inFlight.track(res, async (signal) => {
      try {
        await route(req, res, signal);
      } catch (err) {
        // A client that went away reads no answer; the library has undone what it began.
        if (!res.destroyed) sendError(res, err);
      }
    });
  });

  return {
    server,
    async shutdown() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await inFlight.abortAll();
      server.closeAllConnections();
      await closed;
      // Releases every mount reference this process holds (the containers stay in the
      // store) and, when no other process has the store open, the home's own mounts.
      await store.cleanup();
    },
  };
}

/** "/containers/abc/run?x" → ["containers", "abc", "run"]; each segment URL-decoded, so an id may carry any byte for the library to refuse. */
function pathSegments(url: string): string[] {
  const pathname = url.split('?')[0]!;
  try {
    return pathname.split('/').filter((s) => s !== '').map(decodeURIComponent);
  } catch {
    throw badRequest('the path is not valid percent-encoding');
  }
}

function argvField(body: Record<string, unknown>): string[] {
  const argv = body.argv;
  if (!Array.isArray(argv) || argv.length === 0 || argv.length > 256 || !argv.every((a) => typeof a === 'string' && !a.includes('\0') && a.length <= 65536)) {
    throw badRequest('"argv" must be a non-empty array of at most 256 strings without NUL');
  }
  return argv as string[];
}

function timeoutField(body: Record<string, unknown>): number {
  const t = body.timeoutMs;
  if (t === undefined) return DEFAULT_RUN_TIMEOUT;
  if (typeof t !== 'number' || !Number.isInteger(t) || t <= 0 || t > MAX_RUN_TIMEOUT) throw badRequest(`"timeoutMs" must be an integer from 1 to ${MAX_RUN_TIMEOUT}`);
  return t;
}
