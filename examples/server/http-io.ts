// JSON in and out, and the one table that turns an error's `.code` into an HTTP
// status. Nothing from a request is trusted: bodies are bounded and must be JSON
// objects, fields are type-checked here, and ids, names and references are checked
// again by the library, whose refusals (ERR_OGD_INVALID_*) become 400s.
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  AbortError,
  DigestMismatchError,
  ImageInUseError,
  ImageNotFoundError,
  InvalidArchiveError,
  InvalidIdError,
  InvalidImageError,
  InvalidOptionError,
  InvalidReferenceError,
  LayerExistsError,
  LayerInUseError,
  LayerNotFoundError,
  RegistryError,
  UnsafeLayerError,
} from 'overlay-graphdriver';

/** An error the server makes itself, with a stable code like the library's. */
export class RequestError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const badRequest = (message: string) => new RequestError(400, 'ERR_REQUEST_INVALID', message);

/** A request body is a small JSON object; anything larger is refused before it is buffered. */
const BODY_LIMIT = 64 * 1024;

export async function readJsonObject(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/.test(type)) throw new RequestError(415, 'ERR_REQUEST_MEDIA_TYPE', 'the body must be application/json');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > BODY_LIMIT) throw new RequestError(413, 'ERR_REQUEST_TOO_LARGE', `the body is larger than ${BODY_LIMIT} bytes`);
    chunks.push(chunk);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw badRequest('the body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('the body must be a JSON object');
  return body as Record<string, unknown>;
}

export function stringField(body: Record<string, unknown>, name: string, opts: { optional: true }): string | undefined;
export function stringField(body: Record<string, unknown>, name: string): string;
export function stringField(body: Record<string, unknown>, name: string, opts?: { optional: true }): string | undefined {
  const v = body[name];
  if (v === undefined && opts?.optional) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > 4096) throw badRequest(`"${name}" must be a non-empty string of at most 4096 characters`);
  return v;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The status for an error's code: the library's (lib/errors.ts, README "Errors") or the server's own. */
const STATUS_OF_CODE: Record<string, number> = {
  [InvalidIdError.code]: 400,
  [InvalidReferenceError.code]: 400,
  [InvalidOptionError.code]: 400,
  [LayerNotFoundError.code]: 404,
  [ImageNotFoundError.code]: 404,
  [LayerExistsError.code]: 409,
  [LayerInUseError.code]: 409,
  [ImageInUseError.code]: 409,
  // What a registry sent was refused: the server's upstream failed, not the request.
  [RegistryError.code]: 502,
  [InvalidImageError.code]: 502,
  [DigestMismatchError.code]: 502,
  [UnsafeLayerError.code]: 502,
  [InvalidArchiveError.code]: 502,
  // Aborted by the server's shutdown (a client that went away reads no status).
  [AbortError.code]: 503,
};
export interface ErrorBody {
  code: string;
  message: string;
}

export function errorBody(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof RequestError) return { status: err.status, body: { code: err.code, message: err.message } };
  const code = typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : 'ERR_INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
  return { status: STATUS_OF_CODE[code] ?? 500, body: { code, message } };
}

export function sendError(res: ServerResponse, err: unknown): void {
  const { status, body } = errorBody(err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, status, body);
}
