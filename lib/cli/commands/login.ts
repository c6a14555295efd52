// `ogd login` / `ogd logout`, podman's: the credentials are checked against the
// registry before they are kept, in the auth file podman, skopeo and buildah read
// (--authfile, else $REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json);
// pull and push read it, and docker's ~/.docker/config.json too.
import { createInterface } from 'node:readline';
import { authFilePath, checkLogin, loggedInAs, login as loginTo, logout as logoutOf, NotLoggedInError } from '../../index.js';
import { stringOption, UsageError } from '../command.js';
import type { Command, OptionSpec } from '../command.js';

const authfileOption: OptionSpec = {
  authfile: { type: 'string', value: 'FILE', help: 'the auth file to write', byDefault: '$REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json' },
};

/** The whole of stdin, without its final newline (--password-stdin). */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Asks on the terminal; the password without echo. */
async function prompt(question: string, hidden: boolean): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  if (hidden) {
    // readline echoes through _writeToOutput; after the question, echo nothing.
    const out = rl as unknown as { _writeToOutput(s: string): void; output: NodeJS.WritableStream };
    let asked = false;
    out._writeToOutput = (s: string) => {
      if (!asked) out.output.write(s);
    };
    const answer = new Promise<string>((resolve) => rl.question(question, resolve));
    asked = true;
    const a = await answer;
    process.stderr.write('\n');
    rl.close();
    return a;
  }
  const a = await new Promise<string>((resolve) => rl.question(question, resolve));
  rl.close();
  return a;
}

export const login: Command = {
  name: 'login',
  usage: 'login [-u USER] [-p PASS | --password-stdin] [--authfile F] REGISTRY',
  summary: 'check credentials against a registry and keep them for pull and push (podman and skopeo read them too)',
  example: 'echo "$TOKEN" | ogd login -u ci --password-stdin registry.example.com',
  options: {
    username: { type: 'string', short: 'u', value: 'USER', help: 'the user', byDefault: 'asked on a terminal' },
    password: { type: 'string', short: 'p', value: 'PASS', help: 'the password (seen by ps: prefer --password-stdin)', byDefault: 'asked on a terminal' },
    'password-stdin': { type: 'boolean', help: 'read the password from stdin' },
    'get-login': { type: 'boolean', help: 'print the user logged in to REGISTRY, check nothing' },
    'tls-verify': { type: 'string', value: 'BOOL', help: 'false: plain HTTP or a certificate not verified', byDefault: 'true' },
    ...authfileOption,
  },
  positionals: [1, 1],
  async run(ctx, [registry], values) {
    const tls = stringOption(values, 'tls-verify');
    if (tls !== undefined && tls !== 'true' && tls !== 'false') throw new UsageError('--tls-verify takes true or false (--tls-verify=false)', this);
    const tlsVerify = tls === undefined ? undefined : tls === 'true';
    const authFile = stringOption(values, 'authfile');
    if (values['get-login'] === true) {
      const user = await loggedInAs(registry!, authFile !== undefined ? { authFile } : {});
      ctx.result({ registry, username: user ?? null });
      if (user === undefined) throw new NotLoggedInError(registry!, 'no auth file has credentials for it');
      ctx.say(user);
      return;
    }
    let username = stringOption(values, 'username');
    let password = stringOption(values, 'password');
    if (values['password-stdin'] === true) {
      if (password !== undefined) throw new UsageError('--password and --password-stdin: give one', this);
      if (username === undefined) throw new UsageError('--password-stdin needs --username', this);
      password = await readStdin();
    }
    const opts = { ...(tlsVerify !== undefined ? { tlsVerify } : {}), ...(authFile !== undefined ? { authFile } : {}), signal: ctx.signal };
    if (username === undefined && password === undefined) {
      // podman's habit: with nothing given, stored credentials are checked first.
      const stored = await checkLogin(registry!, opts).catch(() => undefined);
      if (stored !== undefined) {
        ctx.result({ registry, username: stored, authFile: authFile ?? authFilePath(), alreadyLoggedIn: true });
        ctx.say(`Existing credentials are valid. Already logged in to ${registry}`);
        return;
      }
    }
    const interactive = process.stdin.isTTY === true;
    if (username === undefined) {
      if (!interactive) throw new UsageError('no username: give --username (stdin is not a terminal to ask on)', this);
      username = await prompt('Username: ', false);
    }
    if (password === undefined) {
      if (!interactive) throw new UsageError('no password: give --password-stdin or --password (stdin is not a terminal to ask on)', this);
      password = await prompt('Password: ', true);
    }
    const file = await loginTo(registry!, { username, password, ...opts });
    ctx.result({ registry, username, authFile: file });
    ctx.say('Login Succeeded!');
  },
};

export const logout: Command = {
  name: 'logout',
  usage: 'logout [--authfile F] [-a] [REGISTRY]',
  summary: "remove a registry's credentials from the auth file (-a: every registry's)",
  example: 'ogd logout registry.example.com',
  options: {
    all: { type: 'boolean', short: 'a', help: "remove every registry's credentials" },
    ...authfileOption,
  },
  positionals: [0, 1],
  async run(ctx, [registry], values) {
    const all = values['all'] === true;
    if (registry === undefined && !all) throw new UsageError('name a registry, or -a for all', this);
    const authFile = stringOption(values, 'authfile');
    const r = await logoutOf(registry, { all, ...(authFile !== undefined ? { authFile } : {}) });
    ctx.result(r);
    if (all) {
      ctx.say(`Removed login credentials for all registries`);
      return;
    }
    ctx.say(`Removed login credentials for ${registry}`);
  },
};
