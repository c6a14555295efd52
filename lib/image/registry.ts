// One repository on a registry, spoken to through the OCI distribution API
// (opencontainers/distribution-spec, spec.md): manifests by tag or digest, blobs
// (with Range to resume), blob uploads (monolithic or chunked), manifest PUT.
// Anonymous first; a 401 answers with a challenge: Basic (credentials sent as they
// are) or Bearer (a token fetched from the challenge's realm for our scope, cached).
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { InvalidImageError, RegistryError } from '../errors.js';
import { basicHeader, lookupCredentials, parseChallenges, parseCreds, type Credentials } from './auth.js';
import type { Digest } from './digest.js';
import { explainedBody, readBody, responseError, send, type HttpRequest } from './http.js';
import { ACCEPTED_MANIFEST_TYPES, MAX_MANIFEST_BYTES } from './manifest.js';
import { DOCKER_HUB, type DockerReference } from './reference.js';

export interface RegistryOptions {
  /** false: accept self-signed certificates, and fall back to plain HTTP (skopeo's --tls-verify=false). Default true. */
  tlsVerify?: boolean;
  /** "USER:PASSWORD"; otherwise the auth files are read. */
  creds?: string;
  /** Auth files to read instead of the usual ones. */
  authFiles?: string[];
  /** Milliseconds a registry may stay silent (before an answer or within a body) before the request fails; default 120 000. */
  idleTimeout?: number;
}

type Scope = 'pull' | 'pull,push';
type Method = HttpRequest['method'];

const MAX_TOKEN_BYTES = 4 << 20;

export class RegistryClient {
  private base: URL | undefined;
  private credentials: Credentials | undefined | null = null; // null: not looked up yet
  private readonly tokens = new Map<Scope, string>();
  private basic = false;
  private readonly tlsVerify: boolean;

  constructor(
    readonly ref: Pick<DockerReference, 'registry' | 'repository'>,
    private readonly opts: RegistryOptions = {},
  ) {
    this.tlsVerify = opts.tlsVerify ?? true;
  }

  /** The registry's base URL: https, or (tlsVerify false) plain http when https does not answer. */
  private async endpoint(signal: AbortSignal | undefined): Promise<URL> {
    if (this.base !== undefined) return this.base;
    const host = this.ref.registry === DOCKER_HUB ? 'registry-1.docker.io' : this.ref.registry;
    const https = new URL(`https://${host}/`);
    if (this.tlsVerify) return (this.base = https);
    try {
      const res = await send({ method: 'GET', url: new URL('/v2/', https), tlsVerify: false, signal, idleTimeout: this.opts.idleTimeout });
      res.resume();
      this.base = https;
    } catch (err) {
      if (err instanceof RegistryError && err.status === 0) this.base = new URL(`http://${host}/`);
      else throw err;
    }
    return this.base;
  }

  private async creds(): Promise<Credentials | undefined> {
    if (this.credentials === null) {
      this.credentials = this.opts.creds !== undefined ? parseCreds(this.opts.creds) : await lookupCredentials(this.ref.registry, this.ref.repository, this.opts.authFiles);
    }
    return this.credentials;
  }

  private authorization(scope: Scope): string | undefined {
    const token = this.tokens.get(scope) ?? (scope === 'pull' ? this.tokens.get('pull,push') : undefined);
    if (token !== undefined) return `Bearer ${token}`;
    if (this.basic && this.credentials) return basicHeader(this.credentials);
    return undefined;
  }

  /**
   * Sends a request to `path` (relative to the registry, or an absolute upload URL),
   * authenticating on a 401 and retrying once. A streamed body cannot be sent twice,
   * so callers authenticate with a bodiless request first (see `authenticate`).
   */
  async request(method: Method, path: string | URL, scope: Scope, init: { headers?: Record<string, string>; body?: Buffer | Readable; signal?: AbortSignal | undefined } = {}): Promise<IncomingMessage> {
    const base = await this.endpoint(init.signal);
    const url = typeof path === 'string' ? new URL(path, base) : path;
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new RegistryError(`the registry sent a ${url.protocol} URL`, 0);
    const attempt = () => {
      const auth = this.authorization(scope);
      return send({
        method,
        url,
        headers: { ...init.headers, ...(auth !== undefined && url.origin === base.origin ? { Authorization: auth } : {}) },
        ...(init.body !== undefined ? { body: init.body } : {}),
        tlsVerify: this.tlsVerify,
        signal: init.signal,
        idleTimeout: this.opts.idleTimeout,
      });
    };
    const res = await attempt();
    if (res.statusCode !== 401 || (init.body !== undefined && !Buffer.isBuffer(init.body))) return res;
    res.resume();
    await this.answerChallenge(res, scope, init.signal);
    return attempt();
  }

  private async answerChallenge(res: IncomingMessage, scope: Scope, signal: AbortSignal | undefined): Promise<void> {
    const challenges = parseChallenges(res.headers['www-authenticate']);
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const creds = await this.creds();
    if (bearer !== undefined) {
      this.tokens.set(scope, await this.fetchToken(bearer.params, scope, creds, signal));
      return;
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      if (creds === undefined) throw new RegistryError(`${this.ref.registry} needs credentials: pass creds: 'USER:PASS' or log in (auth.json)`, 401, 'UNAUTHORIZED');
      if (this.basic) throw new RegistryError(`${this.ref.registry} refused the credentials for ${this.ref.repository}`, 401, 'UNAUTHORIZED');
      this.basic = true;
      return;
    }
    throw new RegistryError(`${this.ref.registry} answered 401 without a Basic or Bearer challenge`, 401);
  }

  /**
   * `GET /v2/` with the credentials, as podman login checks them: resolves when the
   * registry accepts them (or asks for none), else a RegistryError (401 UNAUTHORIZED
   * for credentials refused, by the registry or its token server).
   */
  async checkCredentials(signal?: AbortSignal): Promise<void> {
    const base = await this.endpoint(signal);
    const url = new URL('/v2/', base);
    const first = await send({ method: 'GET', url, tlsVerify: this.tlsVerify, signal, idleTimeout: this.opts.idleTimeout });
    first.resume();
    if (first.statusCode === 200) return;
    if (first.statusCode !== 401) throw new RegistryError(`${this.ref.registry} answered GET /v2/ with HTTP ${first.statusCode}: not a registry?`, first.statusCode ?? 0);
    const creds = await this.creds();
    if (creds === undefined) throw new RegistryError(`${this.ref.registry} needs credentials`, 401, 'UNAUTHORIZED');
    const challenges = parseChallenges(first.headers['www-authenticate']);
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const authorization = bearer !== undefined ? `Bearer ${await this.fetchToken(bearer.params, undefined, creds, signal)}` : basicHeader(creds);
    const second = await send({ method: 'GET', url, headers: { Authorization: authorization }, tlsVerify: this.tlsVerify, signal, idleTimeout: this.opts.idleTimeout });
    second.resume();
    if (second.statusCode === 200) return;
    if (second.statusCode === 401) throw new RegistryError(`${this.ref.registry} refused the credentials of ${JSON.stringify(creds.username)}`, 401, 'UNAUTHORIZED');
    throw new RegistryError(`${this.ref.registry} answered GET /v2/ with HTTP ${second.statusCode}`, second.statusCode ?? 0);
  }

  /** A token for `scope` on this repository (undefined: no scope, as a login asks). */
  private async fetchToken(params: Record<string, string>, scope: Scope | undefined, creds: Credentials | undefined, signal: AbortSignal | undefined): Promise<string> {
    const realm = params.realm;
    let url: URL;
    try {
      url = new URL(realm ?? '');
    } catch {
      throw new RegistryError(`the registry's Bearer challenge has no usable realm: ${JSON.stringify(realm)}`, 401);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new RegistryError(`token realm ${url.href} is not http(s)`, 401);
    if (params.service !== undefined) url.searchParams.set('service', params.service);
    if (scope !== undefined) url.searchParams.append('scope', `repository:${this.ref.repository}:${scope}`);
    const res = await send({ method: 'GET', url, headers: creds ? { Authorization: basicHeader(creds) } : {}, tlsVerify: this.tlsVerify, signal, idleTimeout: this.opts.idleTimeout });
    if (res.statusCode !== 200) throw await responseError(res, `token from ${url.origin}${url.pathname}`);
    const body = await readBody(res, MAX_TOKEN_BYTES, 'the token response');
    let token: unknown;
    try {
      const j = JSON.parse(body.toString('utf8')) as { token?: unknown; access_token?: unknown };
      token = j.token ?? j.access_token;
    } catch {
      token = undefined;
    }
    if (typeof token !== 'string' || token === '' || /[\r\n]/.test(token)) throw new RegistryError(`the token endpoint ${url.origin} sent no token`, res.statusCode);
    return token;
  }

  private path(kind: 'manifests' | 'blobs', ref: string): string {
    return `/v2/${this.ref.repository}/${kind}/${ref}`;
  }

  /** The manifest (or index) bytes and Content-Type; at most MAX_MANIFEST_BYTES. */
  async getManifest(ref: string, signal?: AbortSignal): Promise<{ bytes: Buffer; mediaType: string | undefined }> {
    const res = await this.request('GET', this.path('manifests', ref), 'pull', { headers: { Accept: ACCEPTED_MANIFEST_TYPES.join(', ') }, signal });
    if (res.statusCode !== 200) throw await responseError(res, `manifest ${this.ref.registry}/${this.ref.repository}:${ref}`);
    const bytes = await readBody(res, MAX_MANIFEST_BYTES, 'the manifest').catch((err: unknown) => {
      throw err instanceof RegistryError ? new InvalidImageError(err.message) : err;
    });
    return { bytes, mediaType: res.headers['content-type'] };
  }

  /** A blob's body from byte `offset` on; `offset` is 0 in the answer when the registry ignored the Range. */
  async getBlob(digest: Digest, offset: number, signal?: AbortSignal): Promise<{ body: Readable; offset: number }> {
    const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
    const res = await this.request('GET', this.path('blobs', digest), 'pull', { headers, signal });
    const what = `blob ${digest} from ${this.ref.registry}/${this.ref.repository}`;
    if (res.statusCode === 206 && offset > 0) {
      const m = /^bytes (\d+)-/.exec(res.headers['content-range'] ?? '');
      if (m !== null && Number(m[1]) === offset) return { body: explainedBody(res, what), offset };
      res.destroy();
      throw new RegistryError(`blob ${digest}: the registry answered a Range request with ${JSON.stringify(res.headers['content-range'])}`, 206);
    }
    if (res.statusCode === 416 && offset > 0) {
      res.resume();
      return this.getBlob(digest, 0, signal);
    }
    if (res.statusCode !== 200) throw await responseError(res, `blob ${digest}`);
    return { body: explainedBody(res, what), offset: 0 };
  }

  /** Whether the repository has the blob (HEAD), with the size it says. */
  async hasBlob(digest: Digest, signal?: AbortSignal): Promise<number | undefined> {
    const res = await this.request('HEAD', this.path('blobs', digest), 'pull,push', { signal });
    res.resume();
    if (res.statusCode === 404) return undefined;
    if (res.statusCode !== 200) throw new RegistryError(`HEAD blob ${digest}: HTTP ${res.statusCode}`, res.statusCode ?? 0);
    const n = Number(res.headers['content-length']);
    return Number.isFinite(n) ? n : -1;
  }

  /**
   * Uploads a blob: POST opens a session, then either one PUT with the whole body
   * (monolithic) or PATCHes of `chunkSize` bytes and a closing PUT?digest=.
   * `open(start, end)` gives the bytes [start, end) as a stream (a file range).
   */
  async uploadBlob(digest: Digest, size: number, open: (start: number, end: number) => Readable, opts: { chunkSize?: number; signal?: AbortSignal | undefined } = {}): Promise<void> {
    const start = await this.request('POST', `/v2/${this.ref.repository}/blobs/uploads/`, 'pull,push', { headers: { 'Content-Length': '0' }, signal: opts.signal });
    if (start.statusCode !== 202) throw await responseError(start, `starting the upload of ${digest}`);
    start.resume();
    let location = this.uploadLocation(start);
    const chunkSize = opts.chunkSize;
    if (chunkSize !== undefined && chunkSize > 0) {
      for (let at = 0; at < size; at += chunkSize) {
        const end = Math.min(size, at + chunkSize);
        const res = await this.request('PATCH', location, 'pull,push', {
          headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(end - at), 'Content-Range': `${at}-${end - 1}` },
          body: open(at, end),
          signal: opts.signal,
        });
        if (res.statusCode !== 202) throw await responseError(res, `uploading ${digest} (bytes ${at}-${end - 1})`);
        res.resume();
        location = this.uploadLocation(res);
      }
      location.searchParams.set('digest', digest);
      const done = await this.request('PUT', location, 'pull,push', { headers: { 'Content-Length': '0' }, signal: opts.signal });
      if (done.statusCode !== 201) throw await responseError(done, `finishing the upload of ${digest}`);
      done.resume();
      return;
    }
    location.searchParams.set('digest', digest);
    const res = await this.request('PUT', location, 'pull,push', {
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) },
      body: open(0, size),
      signal: opts.signal,
    });
    if (res.statusCode !== 201) throw await responseError(res, `uploading ${digest}`);
    res.resume();
  }

  private uploadLocation(res: IncomingMessage): URL {
    const location = res.headers.location;
    if (location === undefined) throw new RegistryError('the registry gave no upload Location', res.statusCode ?? 0);
    const url = new URL(location, this.base);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new RegistryError(`upload Location ${location} is not http(s)`, res.statusCode ?? 0);
    return url;
  }

  async putManifest(ref: string, bytes: Buffer, mediaType: string, signal?: AbortSignal): Promise<void> {
    const res = await this.request('PUT', this.path('manifests', ref), 'pull,push', { headers: { 'Content-Type': mediaType, 'Content-Length': String(bytes.length) }, body: bytes, signal });
    if (res.statusCode !== 201) throw await responseError(res, `putting the manifest ${this.ref.repository}:${ref}`);
    res.resume();
  }

  /** Gets the tokens (or Basic) push needs before a streamed body is sent. */
  async authenticate(scope: Scope, signal?: AbortSignal): Promise<void> {
    const res = await this.request('GET', '/v2/', scope, { signal });
    res.resume();
    if (res.statusCode === 401) {
      // /v2/ may challenge even with a repository-scoped token: answer it for this scope.
      await this.answerChallenge(res, scope, signal);
    }
  }
}
