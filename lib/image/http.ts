// A small HTTP/1.1 client over node:http and node:https, for what registries need and
// fetch does not give on Node 20 without a dependency: certificate checks that can be
// turned off per request (--tls-verify=false), request bodies streamed from files,
// responses read with a byte bound, redirects followed only for GET/HEAD (blob
// downloads go to storage hosts) and without the registry's credentials.
import * as http from 'node:http';
import * as https from 'node:https';
import { PassThrough, type Readable } from 'node:stream';
import { AbortError, RegistryError } from '../errors.js';

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: URL;
  headers?: Record<string, string>;
  /** A buffer, or a stream (then `Content-Length` must be in headers). */
  body?: Buffer | Readable;
  tlsVerify: boolean;
  signal?: AbortSignal | undefined;
  /** Milliseconds of silence (before or during the body) after which the request fails; default DEFAULT_IDLE_TIMEOUT_MS. */
  idleTimeout?: number | undefined;
}

const MAX_REDIRECTS = 5;
/** A connection silent this long is given up (skopeo's default is no limit; a stuck pull should end). */
export const DEFAULT_IDLE_TIMEOUT_MS = 120_000;

/** What a request (and its response's body) fails with when the connection stays silent for the idle timeout. */
class IdleTimeout extends RegistryError {
  constructor(
    readonly ms: number,
    what: string,
  ) {
    super(`${what}: no data for ${ms / 1000} s (the idle timeout)`, 0);
  }
}
const agents = {
  http: new http.Agent({ keepAlive: true }),
  https: new https.Agent({ keepAlive: true }),
  httpsInsecure: new https.Agent({ keepAlive: true, rejectUnauthorized: false }),
};

/** Sends the request; resolves to the response (status and headers read, body not). */
export async function send(req: HttpRequest): Promise<http.IncomingMessage> {
  let url = req.url;
  let headers = { ...req.headers };
  for (let hop = 0; ; hop++) {
    const res = await sendOnce({ ...req, url, headers });
    const location = res.headers.location;
    const redirect = res.statusCode !== undefined && [301, 302, 303, 307, 308].includes(res.statusCode) && location !== undefined;
    if (!redirect || (req.method !== 'GET' && req.method !== 'HEAD')) return res;
    res.resume();
    if (hop >= MAX_REDIRECTS) throw new RegistryError(`too many redirects from ${req.url.origin}`, res.statusCode ?? 0);
    const next = new URL(location, url);
    if (next.protocol !== 'https:' && next.protocol !== 'http:') throw new RegistryError(`redirect to unsupported URL scheme ${next.protocol}`, res.statusCode ?? 0);
    // Credentials are the registry's: never sent on to another origin (a storage host).
    if (next.origin !== url.origin) {
      headers = Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'));
    }
    url = next;
  }
}

function sendOnce(req: HttpRequest): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    if (req.signal?.aborted) {
      reject(new AbortError(undefined, { cause: req.signal.reason }));
      return;
    }
    const isHttps = req.url.protocol === 'https:';
    const options: https.RequestOptions = {
      method: req.method,
      headers: { 'User-Agent': 'overlay-graphdriver', ...req.headers },
      agent: isHttps ? (req.tlsVerify ? agents.https : agents.httpsInsecure) : agents.http,
      ...(req.signal ? { signal: req.signal } : {}),
    };
    let response: http.IncomingMessage | undefined;
    const request = (isHttps ? https : http).request(req.url, options, (res) => {
      response = res;
      resolve(res);
    });
    const what = `${req.method} ${req.url.origin}${req.url.pathname}`;
    // A registry that stops answering (before or during a body) fails the request rather than hanging it.
    // The body is failed first, with this error: otherwise it ends as Node's "aborted" (ECONNRESET).
    const idle = req.idleTimeout ?? DEFAULT_IDLE_TIMEOUT_MS;
    request.setTimeout(idle, () => {
      const err = new IdleTimeout(idle, what);
      response?.destroy(err);
      request.destroy(err);
    });
    request.on('error', (err: Error) => {
      if (err.name === 'AbortError') reject(new AbortError(undefined, { cause: req.signal?.reason }));
      else if (err instanceof RegistryError) reject(err);
      else reject(new RegistryError(`${what}: ${err.message}`, 0, undefined, { cause: err }));
    });
    if (req.body === undefined) request.end();
    else if (Buffer.isBuffer(req.body)) request.end(req.body);
    else {
      req.body.on('error', (err) => request.destroy(err));
      req.body.pipe(request);
    }
  });
}

/**
 * The body of `res` with its failures said in words: a stall names the idle timeout, a
 * connection closed early says so (Node's own error for both is "aborted",
 * ECONNRESET, which reads like the user's abort), each with `what` and how many of
 * the bytes announced had arrived. Stopping the returned stream stops the download.
 */
export function explainedBody(res: http.IncomingMessage, what: string): Readable {
  const declared = Number(res.headers['content-length']);
  const of = Number.isFinite(declared) ? ` of ${declared}` : '';
  let received = 0;
  const out = new PassThrough();
  // As IncomingMessage does: an error before the reader is attached is kept for it, not thrown.
  out.on('error', () => {});
  res.on('data', (chunk: Buffer) => {
    received += chunk.length;
  });
  res.on('error', (err: Error) => {
    if (out.destroyed) return;
    const after = `after ${received}${of} bytes`;
    if (err instanceof IdleTimeout) out.destroy(new RegistryError(`${what}: the registry sent nothing for ${err.ms / 1000} s (the idle timeout) ${after}`, res.statusCode ?? 0, undefined, { cause: err }));
    else if (err instanceof AbortError || err.name === 'AbortError') out.destroy(err);
    else if ((err as NodeJS.ErrnoException).code === 'ECONNRESET' || (err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') {
      out.destroy(new RegistryError(`${what}: the registry closed the connection ${after}`, res.statusCode ?? 0, undefined, { cause: err }));
    } else out.destroy(new RegistryError(`${what}: ${err.message} ${after}`, res.statusCode ?? 0, undefined, { cause: err }));
  });
  out.on('close', () => {
    if (!res.complete) res.destroy();
  });
  res.pipe(out);
  return out;
}

/** Reads the whole body, refusing more than `max` bytes (whatever Content-Length said). */
export async function readBody(res: http.IncomingMessage, max: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) {
    res.destroy();
    throw new RegistryError(`${what} is ${declared} bytes, more than the ${max} accepted`, res.statusCode ?? 0);
  }
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of res) {
    length += (chunk as Buffer).length;
    if (length > max) {
      res.destroy();
      throw new RegistryError(`${what} is more than the ${max} bytes accepted`, res.statusCode ?? 0);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Error bodies are read up to this much (containers/image's maxErrorBodySize). */
const MAX_ERROR_BODY = 1 << 20;

/** A RegistryError from a failed response, with the spec's error code from its body when there is one. */
export async function responseError(res: http.IncomingMessage, what: string): Promise<RegistryError> {
  const status = res.statusCode ?? 0;
  let code: string | undefined;
  let detail = '';
  try {
    const body = await readBody(res, MAX_ERROR_BODY, 'the error body');
    const j = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: unknown; message?: unknown }> };
    const first = j.errors?.[0];
    if (typeof first?.code === 'string') code = first.code;
    if (typeof first?.message === 'string') detail = `: ${first.message}`;
  } catch {
    // not the spec's JSON error body; the status says enough
  }
  return new RegistryError(`${what}: HTTP ${status}${code !== undefined ? ` ${code}` : ''}${detail}`, status, code);
}
