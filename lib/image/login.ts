// `ogd login` / `ogd logout`, as podman's: credentials checked against the registry
// (GET /v2/, with a token from its token server when it asks for one), then kept as
// {"auths": {"HOST[:PORT][/NAMESPACE]": {"auth": base64("user:password")}}} in the auth
// file podman, skopeo and buildah read: $REGISTRY_AUTH_FILE, else
// ${XDG_RUNTIME_DIR}/containers/auth.json (auth.ts). The file is replaced whole
// (written beside itself and renamed, mode 0600), other entries and keys kept.
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { InvalidOptionError, NotLoggedInError } from '../errors.js';
import { authFiles, defaultAuthFile, lookupCredentials } from './auth.js';
import { RegistryClient } from './registry.js';
import { DOCKER_HUB } from './reference.js';

export interface LoginOptions {
  username: string;
  password: string;
  /** false: plain HTTP or an unverified certificate. Default true. */
  tlsVerify?: boolean;
  /** The auth file to write; default $REGISTRY_AUTH_FILE, else podman's (authFilePath()). */
  authFile?: string;
  signal?: AbortSignal;
}

export interface LogoutOptions {
  authFile?: string;
  /** Remove every registry's entry. */
  all?: boolean;
}

export interface LogoutResult {
  /** Keys removed from the auth file. */
  removed: string[];
  /** The auth file written. */
  authFile: string;
}

/** The auth file login writes and logout edits: $REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json. */
export function authFilePath(): string {
  return process.env.REGISTRY_AUTH_FILE || defaultAuthFile();
}

/** "docker://host:5000/ns" or "https://host/" → "host:5000/ns": the key an auth file uses. */
export function registryKey(registry: string): string {
  const key = registry.replace(/^(?:docker:\/\/|https?:\/\/)/, '').replace(/\/+$/, '');
  if (key === '' || /[\s@]/.test(key) || key.includes('://')) throw new InvalidOptionError(`${JSON.stringify(registry)} is not a registry (HOST[:PORT][/NAMESPACE])`);
  return key === 'index.docker.io' || key === 'registry-1.docker.io' ? DOCKER_HUB : key;
}

function hostOf(key: string): { registry: string; repository: string } {
  const slash = key.indexOf('/');
  return slash < 0 ? { registry: key, repository: '' } : { registry: key.slice(0, slash), repository: key.slice(slash + 1) };
}

type AuthFile = { auths?: Record<string, unknown>; [key: string]: unknown };

async function readAuthFile(file: string): Promise<AuthFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  if (text.trim() === '') return {};
  try {
    const v = JSON.parse(text) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    return v as AuthFile;
  } catch {
    throw new InvalidOptionError(`${file} is not a JSON auth file; fix or remove it`);
  }
}

/** Writes the auth file whole: a temp file beside it (0600), flushed, renamed over it. */
async function writeAuthFile(file: string, content: AuthFile): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.ogd-${process.pid}.tmp`;
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(JSON.stringify(content, null, '\t') + '\n');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Checks the credentials against the registry, then stores them; resolves to the auth file written. */
export async function login(registry: string, opts: LoginOptions): Promise<string> {
  const key = registryKey(registry);
  if (typeof opts.username !== 'string' || opts.username === '' || opts.username.includes(':')) throw new InvalidOptionError('a username is needed, without ":"');
  if (typeof opts.password !== 'string' || opts.password === '') throw new InvalidOptionError('a password is needed');
  const client = new RegistryClient(hostOf(key), { creds: `${opts.username}:${opts.password}`, ...(opts.tlsVerify !== undefined ? { tlsVerify: opts.tlsVerify } : {}) });
  await client.checkCredentials(opts.signal);
  const file = opts.authFile ?? authFilePath();
  const content = await readAuthFile(file);
  content.auths = { ...(content.auths ?? {}), [key]: { auth: Buffer.from(`${opts.username}:${opts.password}`, 'utf8').toString('base64') } };
  await writeAuthFile(file, content);
  return file;
}

/** The username stored for the registry (the auth files as pull reads them, or `authFile` alone), or undefined. */
export async function loggedInAs(registry: string, opts: { authFile?: string } = {}): Promise<string | undefined> {
  const { registry: host, repository } = hostOf(registryKey(registry));
  return (await lookupCredentials(host, repository, opts.authFile !== undefined ? [opts.authFile] : authFiles()))?.username;
}

/** Checks the stored credentials for the registry against it (podman login with nothing given). */
export async function checkLogin(registry: string, opts: { tlsVerify?: boolean; authFile?: string; signal?: AbortSignal } = {}): Promise<string> {
  const key = registryKey(registry);
  const { registry: host, repository } = hostOf(key);
  const creds = await lookupCredentials(host, repository, opts.authFile !== undefined ? [opts.authFile] : authFiles());
  if (creds === undefined) throw new InvalidOptionError(`no credentials for ${key}: give a username and password`);
  const client = new RegistryClient({ registry: host, repository }, { creds: `${creds.username}:${creds.password}`, ...(opts.tlsVerify !== undefined ? { tlsVerify: opts.tlsVerify } : {}) });
  await client.checkCredentials(opts.signal);
  return creds.username;
}

/** Removes the registry's entry (or every entry) from the auth file; NotLoggedInError when it has none. */
export async function logout(registry: string | undefined, opts: LogoutOptions = {}): Promise<LogoutResult> {
  const file = opts.authFile ?? authFilePath();
  const content = await readAuthFile(file);
  const auths = { ...(content.auths ?? {}) };
  let removed: string[];
  if (opts.all === true) {
    removed = Object.keys(auths);
    content.auths = {};
  } else {
    if (registry === undefined) throw new InvalidOptionError('name a registry, or log out of all');
    const key = registryKey(registry);
    removed = Object.keys(auths).filter((k) => k.replace(/^https?:\/\//, '').replace(/\/+$/, '') === key);
    for (const k of removed) delete auths[k];
    content.auths = auths;
    if (removed.length === 0) {
      const { registry: host, repository } = hostOf(key);
      for (const other of authFiles().filter((f) => f !== file)) {
        if ((await lookupCredentials(host, repository, [other]).catch(() => undefined)) !== undefined) {
          throw new NotLoggedInError(key, `${file} has no credentials for it; ${other} has, which ogd only reads (remove them with the tool that wrote them: docker logout)`);
        }
      }
      throw new NotLoggedInError(key, `${file} has no credentials for it`);
    }
  }
  if (removed.length > 0) await writeAuthFile(file, content);
  return { removed, authFile: file };
}

