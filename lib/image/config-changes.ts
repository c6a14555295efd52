// `commit --change`: Dockerfile instructions applied to an image's runtime config
// (the OCI config's "config"), as podman commit and buildah take them: CMD,
// ENTRYPOINT (exec form as a JSON array, else shell form through /bin/sh -c), ENV and
// LABEL (KEY=VALUE pairs, quotes as in a Dockerfile; ENV's legacy "KEY VALUE"),
// WORKDIR (relative to the one before), USER, EXPOSE (PORT[/PROTO]), VOLUME and
// STOPSIGNAL. ENTRYPOINT clears CMD unless a CMD follows it, as in a Dockerfile.
import { posix } from 'node:path';
import { InvalidOptionError } from '../errors.js';

export const CHANGE_INSTRUCTIONS = ['CMD', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'LABEL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR'] as const;

/** The OCI runtime config's fields this touches (others are kept as they are). */
export interface RuntimeConfig {
  Cmd?: string[];
  Entrypoint?: string[];
  Env?: string[];
  Labels?: Record<string, string>;
  WorkingDir?: string;
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Volumes?: Record<string, Record<string, never>>;
  StopSignal?: string;
  [key: string]: unknown;
}

function refuse(change: string, why: string): never {
  throw new InvalidOptionError(`--change ${JSON.stringify(change)}: ${why}`);
}

/** A Dockerfile line's words: blanks split, "double" and 'single' quotes group, a backslash escapes. */
function shellWords(text: string, change: string): string[] {
  const out: string[] = [];
  let word = '';
  let inWord = false;
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"' && i + 1 < text.length) word += text[++i];
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote !== undefined) refuse(change, `unterminated ${quote} quote`);
  if (inWord) out.push(word);
  return out;
}

/** KEY=VALUE pairs (ENV, LABEL); ENV also takes the legacy "KEY VALUE". */
function pairs(rest: string, change: string, legacy: boolean): Array<[string, string]> {
  const words = shellWords(rest, change);
  if (words.length === 0) refuse(change, 'needs KEY=VALUE');
  if (!words[0]!.includes('=')) {
    if (!legacy) refuse(change, `${JSON.stringify(words[0])} is not KEY=VALUE`);
    const key = words[0]!;
    const value = rest.trim().slice(rest.trim().indexOf(key) + key.length).trim();
    return [[key, shellWords(value, change).join(' ')]];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq <= 0) refuse(change, `${JSON.stringify(w)} is not KEY=VALUE`);
    return [w.slice(0, eq), w.slice(eq + 1)];
  });
}

/** A command in exec form (a JSON array of strings) or shell form. */
function command(rest: string, change: string): string[] {
  const text = rest.trim();
  if (text.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined; // not JSON: the shell form, as Docker takes it
    }
    if (Array.isArray(parsed)) {
      if (!parsed.every((p) => typeof p === 'string')) refuse(change, 'a JSON command must be an array of strings');
      return parsed as string[];
    }
  }
  if (text === '') refuse(change, 'needs a command');
  return ['/bin/sh', '-c', text];
}

/** The runtime config `base` with `changes` applied in order; throws InvalidOptionError naming a change that does not parse. */
export function applyConfigChanges(base: RuntimeConfig | undefined, changes: readonly string[]): RuntimeConfig {
  const config: RuntimeConfig = { ...(base ?? {}) };
  let cmdSet = false;
  for (const change of changes) {
    if (typeof change !== 'string') throw new InvalidOptionError('a change must be a string');
    const m = /^\s*([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(change);
    const instruction = m?.[1]?.toUpperCase();
    const rest = m?.[2] ?? '';
    if (instruction === undefined || !(CHANGE_INSTRUCTIONS as readonly string[]).includes(instruction)) {
      refuse(change, `not one of ${CHANGE_INSTRUCTIONS.join(', ')}`);
    }
    switch (instruction) {
      case 'CMD':
        config.Cmd = command(rest, change);
        cmdSet = true;
        break;
      case 'ENTRYPOINT':
        config.Entrypoint = command(rest, change);
        if (!cmdSet) delete config.Cmd;
        break;
      case 'ENV': {
        const env = [...(config.Env ?? [])];
        for (const [k, v] of pairs(rest, change, true)) {
          const at = env.findIndex((e) => e.split('=')[0] === k);
          if (at >= 0) env[at] = `${k}=${v}`;
          else env.push(`${k}=${v}`);
        }
        config.Env = env;
        break;
      }
      case 'LABEL':
        config.Labels = { ...(config.Labels ?? {}), ...Object.fromEntries(pairs(rest, change, false)) };
        break;
      case 'WORKDIR': {
        const dir = shellWords(rest, change).join(' ');
        if (dir === '') refuse(change, 'needs a directory');
        config.WorkingDir = posix.resolve(config.WorkingDir || '/', dir);
        break;
      }
      case 'USER': {
        const user = rest.trim();
        if (user === '' || /\s/.test(user)) refuse(change, 'needs one USER[:GROUP]');
        config.User = user;
        break;
      }
      case 'EXPOSE': {
        const ports = shellWords(rest, change);
        if (ports.length === 0) refuse(change, 'needs PORT[/tcp|udp|sctp]');
        const exposed = { ...(config.ExposedPorts ?? {}) };
        for (const p of ports) {
          const pm = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/(tcp|udp|sctp))?$/i.exec(p);
          if (pm === null || Number(pm[1]) > 65535 || Number(pm[2] ?? 0) > 65535) refuse(change, `${JSON.stringify(p)} is not PORT[/tcp|udp|sctp]`);
          exposed[`${pm[1]}${pm[2] ? `-${pm[2]}` : ''}/${(pm[3] ?? 'tcp').toLowerCase()}`] = {};
        }
        config.ExposedPorts = exposed;
        break;
      }
      case 'VOLUME': {
        const text = rest.trim();
        let paths: unknown = undefined;
        if (text.startsWith('[')) {
          try {
            paths = JSON.parse(text);
          } catch {
            paths = undefined;
          }
        }
        const list = Array.isArray(paths) && paths.every((p) => typeof p === 'string') ? (paths as string[]) : shellWords(text, change);
        if (list.length === 0) refuse(change, 'needs a path');
        config.Volumes = { ...(config.Volumes ?? {}), ...Object.fromEntries(list.map((p) => [p, {}])) };
        break;
      }
      case 'STOPSIGNAL': {
        const signal = rest.trim();
        if (!/^(?:SIG[A-Z0-9+-]+|\d+)$/.test(signal)) refuse(change, `${JSON.stringify(signal)} is not a signal name or number`);
        config.StopSignal = signal;
        break;
      }
    }
  }
  return config;
}
