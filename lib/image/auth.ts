// Registry credentials and the WWW-Authenticate challenge flow, as skopeo and podman
// do them: `creds: 'USER:PASS'` wins; otherwise the first auth file that has an entry
// for the registry — $REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json (or
// /run/containers/$UID/auth.json without XDG_RUNTIME_DIR: podman's for root),
// ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json, ~/.docker/config.json. Entries
// are {"auth": base64("user:pass")} keyed by host[:port] (or host/namespace, most
// specific first). Credential helpers (credsStore, credHelpers) are not run.
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { InvalidOptionError } from '../errors.js';
import { DOCKER_HUB } from './reference.js';

export interface Credentials {
  username: string;
  password: string;
}

export function parseCreds(creds: string): Credentials {
  const colon = creds.indexOf(':');
  if (colon <= 0) throw new InvalidOptionError('creds must be "USER:PASSWORD"');
  return { username: creds.slice(0, colon), password: creds.slice(colon + 1) };
}

/** The auth files consulted, in order (the environment read now). */
export function authFiles(): string[] {
  const files: string[] = [];
  const env = process.env;
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  files.push(defaultAuthFile());
  files.push(join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'containers', 'auth.json'));
  files.push(join(env.DOCKER_CONFIG || join(homedir(), '.docker'), 'config.json'));
  return files;
}

/**
 * The auth file podman login writes (containers/image's default, without
 * $REGISTRY_AUTH_FILE): ${XDG_RUNTIME_DIR}/containers/auth.json, else
 * /run/containers/$UID/auth.json.
 */
export function defaultAuthFile(): string {
  const runtime = process.env.XDG_RUNTIME_DIR;
  return runtime ? join(runtime, 'containers', 'auth.json') : `/run/containers/${process.getuid?.() ?? 0}/auth.json`;
}

/** Keys an auth file may use for `registry/repository`, most specific first. */
function candidateKeys(registry: string, repository: string): string[] {
  const keys: string[] = [];
  const parts = repository.split('/');
  for (let n = parts.length; n >= 1; n--) keys.push(`${registry}/${parts.slice(0, n).join('/')}`);
  keys.push(registry, `https://${registry}`, `http://${registry}`);
  if (registry === DOCKER_HUB) keys.push('https://index.docker.io/v1/', 'index.docker.io', 'registry-1.docker.io');
  return keys;
}

/** Credentials for the registry from the auth files (`files` overrides the usual list), or undefined. */
export async function lookupCredentials(registry: string, repository: string, files = authFiles()): Promise<Credentials | undefined> {
  const keys = candidateKeys(registry, repository);
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      continue; // a missing or unreadable file is skipped, as the other tools do
    }
    let auths: Record<string, unknown>;
    try {
      auths = ((JSON.parse(text) as { auths?: Record<string, unknown> }).auths ?? {}) as Record<string, unknown>;
    } catch {
      throw new InvalidOptionError(`${file} is not valid JSON`);
    }
    const normalised = new Map(Object.entries(auths).map(([k, v]) => [k.replace(/\/+$/, ''), v]));
    for (const key of keys) {
      const entry = (normalised.get(key.replace(/\/+$/, '')) ?? auths[key]) as { auth?: unknown } | undefined;
      if (typeof entry?.auth !== 'string' || entry.auth === '') continue;
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      if (!decoded.includes(':')) throw new InvalidOptionError(`${file}: the "auth" of ${key} is not base64("user:password")`);
      return parseCreds(decoded);
    }
  }
  return undefined;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses WWW-Authenticate (RFC 7235): `Bearer realm="…",service="…",scope="…"` and the like. */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const text = Array.isArray(header) ? header.join(', ') : (header ?? '');
  const out: Challenge[] = [];
  let i = 0;
  const skip = (chars: RegExp) => {
    while (i < text.length && chars.test(text[i]!)) i++;
  };
  while (i < text.length) {
    skip(/[\s,]/);
    const start = i;
    while (i < text.length && /[A-Za-z0-9!#$%&'*+.^_`|~-]/.test(text[i]!)) i++;
    if (i === start) break; // not a token: stop rather than guess
    const token = text.slice(start, i);
    skip(/\s/);
    if (text[i] !== '=' || out.length === 0) {
      out.push({ scheme: token.toLowerCase(), params: {} });
      continue;
    }
    i++; // '='
    skip(/\s/);
    let value = '';
    if (text[i] === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) value += text[i] === '\\' ? text[++i] ?? '' : text[i];
      i++;
    } else {
      const v = i;
      while (i < text.length && !/[\s,]/.test(text[i]!)) i++;
      value = text.slice(v, i);
    }
    out[out.length - 1]!.params[token.toLowerCase()] = value;
  }
  return out;
}

export function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64')}`;
}
