// A small HTTP/1.1 client over node:http and node:https, for what registries need and
// fetch does not give on Node 20 without a dependency: certificate checks that can be
// turned off per request (--tls-verify=false), request bodies streamed from files,
// responses read with a byte bound, redirects followed only for GET/HEAD (blob
// downloads go to storage hosts) and without the registry's credentials.
import * as http from 'node:http';
import * as https from 'node:https';
import type { Readable } from 'node:stream';
import { AbortError, RegistryError } from '../errors.js';

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: URL;
  headers?: Record<string, string>;
  /** A buffer, or a stream (then `Content-Length` must be in headers). */
  body?: Buffer | Readable;
  tlsVerify: boolean;
  signal?: AbortSignal | undefined;
}

const MAX_REDIRECTS = 5;
/** A connection silent this long is given up (skopeo's default is no limit; a stuck pull should end). */
const IDLE_TIMEOUT_MS = 120_000;
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
    const request = (isHttps ? https : http).request(req.url, options, resolve);
    // A registry that stops answering (before or during a body) fails the request rather than hanging it.
    request.setTimeout(IDLE_TIMEOUT_MS, () => request.destroy(new Error(`no data for ${IDLE_TIMEOUT_MS / 1000} s`)));
    request.on('error', (err: Error) => {
      if (err.name === 'AbortError') reject(new AbortError(undefined, { cause: req.signal?.reason }));
      else reject(new RegistryError(`${req.method} ${req.url.origin}${req.url.pathname}: ${err.message}`, 0, undefined, { cause: err }));
    });
    if (req.body === undefined) request.end();
    else if (Buffer.isBuffer(req.body)) request.end(req.body);
    else {
      req.body.on('error', (err) => request.destroy(err));
      req.body.pipe(request);
    }
  });
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
