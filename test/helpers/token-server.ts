// The token endpoint of the Docker registry token auth (distribution's docs/spec/auth/
// token.md and jwt.md), for a real docker-registry configured with `auth: token:`:
// GET /token?service=…&scope=repository:NAME:ACTIONS with Basic credentials answers
// {"token": JWT}, the JWT signed RS256 by a self-signed certificate (made by openssl)
// that the registry trusts through its rootcertbundle and finds in the x5c header.
// The registry verifies the token itself; this server only issues it.
import { execFile } from 'node:child_process';
import { createPrivateKey, createSign, randomBytes, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';

const run = promisify(execFile);

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  certFile: string;
  /** Scopes asked for, in order. */
  requests: string[];
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export async function startTokenServer(t: TestContext, dir: string, user: string, password: string): Promise<TokenServer> {
  const keyFile = join(dir, 'token.key');
  const certFile = join(dir, 'token.crt');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=ogd-test-token']);
  const key = createPrivateKey(await readFile(keyFile));
  const certDer = new X509Certificate(await readFile(certFile)).raw;
  const service = 'ogd-test-registry';
  const issuer = 'ogd-test-issuer';
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const expected = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    if (url.pathname !== '/token' || req.headers.authorization !== expected) {
      res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}');
      return;
    }
    const access = url.searchParams.getAll('scope').map((scope) => {
      requests.push(scope);
      const [type, name, actions] = scope.split(':');
      return { type, name, actions: (actions ?? '').split(',') };
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
    const claims = { iss: issuer, sub: user, aud: url.searchParams.get('service'), exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(signingInput).sign(key);
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token: `${signingInput}.${b64url(signature)}`, expires_in: 300 }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections(); // keep-alive clients would hold close() open
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  server.unref();
  const port = (server.address() as { port: number }).port;
  return { realm: `http://127.0.0.1:${port}/token`, service, issuer, certFile, requests };
}
