// The podman and skopeo habits of the CLI (issue 28 §2), each checked on the real
// binary: 80-column help with every flag explained, "did you mean", podman's exit
// codes, version/info, images' columns and flags (an image whose config was made
// here, 2020-dated, so CREATED cannot be the pull time), inspect with templates,
// short ids, names and generated ids, ps apart from image layers, rm of several ids,
// commit's --message/--author/--change and its bars on a terminal, and login/logout
// against a real registry with htpasswd, read back by skopeo. Commands are grouped so
// the file costs few processes; the help texts are checked in-process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile, execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openStore } from '../lib/index.js';
import { globalOptions } from '../lib/cli/context.js';
import { loadAllCommands } from '../lib/cli/commands/index.js';
import { commandHelp, mainHelp } from '../lib/cli/help.js';
import { ogd, ogdMain } from './helpers/ogd-cli.js';
import type { Outcome, RunOptions } from './helpers/ogd-cli.js';
import { have, skipWithout, startRegistry } from './helpers/registry.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { startTokenServer } from './helpers/token-server.js';

const run = promisify(execFile);
const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function ok(args: string[], opts?: RunOptions): Promise<string> {
  const r = await ogd(args, opts);
  assert.equal(r.code, 0, `ogd ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

async function fails(args: string[], code: number, pattern: RegExp, opts?: RunOptions): Promise<Outcome> {
  const r = await ogd(args, opts);
  assert.equal(r.code, code, `ogd ${args.join(' ')}: exit code (stderr: ${r.stderr})`);
  assert.match(r.stderr, pattern);
  return r;
}

/** The command's output on a pseudo-terminal (script(1)), stdout and stderr together. */
function onTerminal(args: string[]): string {
  const command = [process.execPath, ogdMain, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return execFileSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', env: { ...process.env, COLUMNS: '100' } });
}

test('help fits 80 columns and explains every flag; unknown commands and flags get a "did you mean"; usage mistakes exit 125', async () => {
  const commands = await loadAllCommands();
  const texts = [mainHelp(commands, globalOptions), ...commands.map((c) => commandHelp(c, globalOptions))];
  for (const text of texts) {
    for (const line of text.split('\n')) assert.ok([...line].length <= 80, `over 80 columns: ${JSON.stringify(line)}`);
  }
  for (const c of commands) {
    const help = commandHelp(c, globalOptions).replace(/\s+/g, ' ');
    for (const [name, o] of Object.entries(c.options)) {
      assert.ok(o.help.length > 5, `${c.name} --${name} says what it does`);
      assert.ok(help.includes(`--${name}`) && help.includes(o.help.replace(/\s+/g, ' ')), `${c.name} --help explains --${name}`);
      if (o.byDefault !== undefined) assert.ok(help.includes(`(default: ${o.byDefault})`), `${c.name} --help gives --${name}'s default`);
    }
  }
  const main = await ok(['--help']);
  assert.equal(main, mainHelp(commands, globalOptions), 'ogd --help prints it');
  for (const name of ['inspect', 'ps', 'info', 'version', 'login', 'logout', 'copy-tree']) assert.match(main, new RegExp(`^  ${name} `, 'm'));
  assert.match(main, /^  125 +an error of ogd itself/m, 'the exit codes are listed');
  assert.match(await ok(['copy', '--help']), /^usage: ogd copy-tree SRC DST/m, 'copy is the tree copy\'s alias');

  await Promise.all([
    fails(['imgaes'], 125, /^ogd: unknown command "imgaes" \(did you mean "images"\?\)\n/),
    fails(['images', '--no-trunk'], 125, /^ogd images: unknown option --no-trunk \(did you mean "--no-trunc"\?\)\nusage: ogd images/),
    fails(['inspect'], 125, /^ogd inspect: missing argument\n/),
  ]);

  const pkg = JSON.parse(await readFile(join(ogdMain, '..', '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
  assert.equal(await ok(['version', '--format', '{{.Ogd}} {{.Node}}']), `${pkg.version} ${process.version}\n`);
});

/** An OCI layout made by hand: one layer (GNU tar), a config dated 2020 with Env and Cmd, tagged `app`. */
async function handMadeLayout(dir: string): Promise<{ layout: string; configDigest: string; diffId: string }> {
  const layout = join(dir, 'oci');
  const rootfs = join(dir, 'rootfs');
  await mkdir(join(rootfs, 'etc'), { recursive: true });
  await writeFile(join(rootfs, 'etc/hello'), 'hello\n');
  const tar = execFileSync('tar', ['-C', rootfs, '--numeric-owner', '-cf', '-', '.']);
  const config = Buffer.from(
    JSON.stringify({
      created: '2020-01-02T03:04:05Z',
      author: 'hand',
      architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      os: 'linux',
      config: { Env: ['PATH=/usr/bin', 'FOO=bar'], Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
      history: [{ created: '2020-01-02T03:04:05Z', created_by: 'hand' }],
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(tar), size: tar.length }],
    }),
  );
  await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
  for (const blob of [tar, config, manifest]) await writeFile(join(layout, 'blobs', 'sha256', sha256(blob).slice(7)), blob);
  await writeFile(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const index = { schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(manifest), size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': 'app' } }] };
  await writeFile(join(layout, 'index.json'), JSON.stringify(index));
  return { layout, configDigest: sha256(config), diffId: sha256(tar) };
}

test('images, inspect, short ids, names, ps, rm, commit flags and info on a real store', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, 'ogd-cli-habits-');
  const home = join(dir, 'store');
  const g = ['--home', home];
  const { layout, configDigest, diffId } = await handMadeLayout(dir);
  const imageId = configDigest.slice(7);
  const haveScript = have('script');

  // A pull on a terminal: the layer board stays above the summary, never drawn over it.
  if (haveScript) {
    const tty = onTerminal([...g, 'pull', `oci:${layout}:app`]);
    const summary = tty.lastIndexOf('pulled app:latest');
    assert.ok(summary > 0, tty);
    assert.doesNotMatch(tty.slice(summary), /\x1b\[/, 'nothing redrawn after the summary');
  } else {
    await ok([...g, 'pull', `oci:${layout}:app`]);
  }

  // images: podman's columns, CREATED from the config (2020), not the pull; read-only, so run at once.
  const [listed, none, quiet, whole, asJsonText, templated, full] = await Promise.all([
    ok([...g, 'images']),
    ok([...g, 'images', 'nomatch']),
    ok([...g, 'images', 'app', '-q']),
    ok([...g, 'images', '--no-trunc', '--digests']),
    ok([...g, 'images', '--format', 'json']),
    // inspect: by a 12-hex short id, through a template; the whole document by name.
    ok([...g, 'inspect', imageId.slice(0, 12), '--format', '{{.Id}} {{.Config.Env}} {{.Author}}']),
    ok([...g, 'inspect', 'app']),
  ]);
  const table = listed.trimEnd().split('\n');
  assert.match(table[0]!, /^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE$/);
  assert.match(table[1]!, new RegExp(`^app +latest +${imageId.slice(0, 12)} +\\d+ years ago +\\d`));
  assert.equal(table.length, 2);
  assert.equal(none.trimEnd().split('\n').length, 1, 'a filter that matches nothing leaves the header');
  assert.equal(quiet, `${imageId.slice(0, 12)}\n`);
  assert.match(whole, new RegExp(`^REPOSITORY +TAG +DIGEST +IMAGE ID .*\\napp +latest +sha256:[0-9a-f]{64} +sha256:${imageId} `, 's'));
  const asJson = JSON.parse(asJsonText) as Array<{ Id: string; Created: string; Names: string[] }>;
  assert.deepEqual(asJson.map((i) => [i.Id, i.Created, i.Names]), [[imageId, '2020-01-02T03:04:05Z', ['app:latest']]]);
  assert.equal(templated, `${imageId} [PATH=/usr/bin FOO=bar] hand\n`);
  const [doc] = JSON.parse(full) as Array<{ Type: string; Created: string; Layers: Array<{ DiffID: string }>; Manifest: { layers: unknown[] }; RepoTags: string[] }>;
  assert.deepEqual([doc!.Type, doc!.Created, doc!.Layers.map((l) => l.DiffID), doc!.Manifest.layers.length, doc!.RepoTags], ['image', '2020-01-02T03:04:05Z', [diffId], 1, ['app:latest']]);

  // create without an id: a new 64-hex id, printed; --name stands for it everywhere.
  const id = (await ok([...g, 'create', '--rw', '--parent', 'app', '--name', 'web'])).trim();
  assert.match(id, /^[0-9a-f]{64}$/);
  await fails([...g, 'create', '--rw', '--parent', 'app', '--name', 'web'], 125, /ERR_OGD_LAYER_EXISTS/);
  const root = (await ok([...g, 'mount', 'web'])).trim();
  await writeFile(join(root, 'new.txt'), 'written in the container\n');
  const [layer] = JSON.parse(await ok([...g, 'inspect', id.slice(0, 12)])) as Array<{ Type: string; Names: string[]; Image: string; Mounted: boolean; GraphDriver: { Data: Record<string, string> } }>;
  assert.deepEqual([layer!.Type, layer!.Names, layer!.Image, layer!.Mounted, layer!.GraphDriver.Data['MergedDir']], ['container', ['web'], 'app:latest', true, root]);

  // ps lists the container alone, not the image's layer; `containers` is its alias.
  const ps = (await ok([...g, 'ps'])).trimEnd().split('\n');
  assert.match(ps[0]!, /^CONTAINER ID +IMAGE +CREATED +MOUNTED +NAMES$/);
  assert.match(ps[1]!, new RegExp(`^${id.slice(0, 12)} +app:latest +.* ago +yes \\(1\\) +web$`));
  assert.equal(ps.length, 2);
  assert.equal(await ok([...g, 'containers', '--format', '{{.ID}} {{.Image}} {{.Mounted}}', '--no-trunc']), `${id} app:latest true\n`);

  // Short ids: a unique prefix works; one that starts several ids is refused, naming them.
  const s = await openStore(home);
  try {
    await s.create(`abc${'0'.repeat(61)}`);
    await s.create(`abc${'1'.repeat(61)}`);
  } finally {
    await s.cleanup();
  }
  await fails([...g, '--json', 'exists', 'abc'], 125, /^ogd exists: "abc" is ambiguous: it starts 2 ids \(abc000000000, abc111111111\); give more of the id \[ERR_OGD_AMBIGUOUS_ID\]\n$/);
  assert.equal(await ok([...g, 'exists', 'abc1']), 'true\n');
  await fails([...g, 'exists', 'abd'], 1, /^$/);
  await ok([...g, 'unmount', id.slice(0, 12)]);

  // commit: --message, --author, --change (podman's set, Dockerfile syntax), with bars on a terminal.
  const commit = [...g, 'commit', id.slice(0, 12), 'mine:v1', '-m', 'a message', '--author', 'Ann <ann@example.com>'];
  const changes = ['ENTRYPOINT ["/bin/app", "--serve"]', 'CMD --port 80', 'ENV A=1 B="two words"', 'WORKDIR /srv', 'WORKDIR www', 'LABEL org.example.k=v', 'USER 1000:1000', 'EXPOSE 8080/udp 443', 'STOPSIGNAL SIGTERM'];
  await fails([...commit, '--change', 'FROM debian'], 125, /--change "FROM debian": not one of CMD, .*\[ERR_OGD_INVALID_OPTION\]/);
  const args = [...commit, ...changes.flatMap((c) => ['--change', c])];
  if (haveScript) {
    const tty = onTerminal(args);
    assert.match(tty, /commit: diff \+ compress · \d+ entries · [\d.]+ k?B/, `the diff's bar: ${JSON.stringify(tty)}`);
    assert.match(tty, /\r\x1b\[2Kcommitted [0-9a-f]{12} as mine:v1/, 'the bar is erased before the result line');
  } else {
    await ok(args);
  }
  const s2 = await openStore(home);
  try {
    const rec = await s2.imageRecord('mine:v1');
    const config = JSON.parse(Buffer.from(rec.config, 'base64').toString('utf8')) as { author: string; config: Record<string, unknown>; history: Array<{ comment?: string; author?: string }> };
    assert.equal(config.author, 'Ann <ann@example.com>');
    assert.deepEqual(config.history.at(-1), { created: (config.history.at(-1) as { created: string }).created, author: 'Ann <ann@example.com>', created_by: `ogd commit ${id.slice(0, 12)}`, comment: 'a message' });
    assert.deepEqual(config.config, {
      Env: ['PATH=/usr/bin', 'FOO=bar', 'A=1', 'B=two words'],
      Cmd: ['/bin/sh', '-c', '--port 80'],
      Entrypoint: ['/bin/app', '--serve'],
      WorkingDir: '/srv/www',
      Labels: { 'org.example.k': 'v' },
      User: '1000:1000',
      ExposedPorts: { '8080/udp': {}, '443/tcp': {} },
      StopSignal: 'SIGTERM',
    });
  } finally {
    await s2.cleanup();
  }

  // info: the store's counts, through a template.
  assert.equal(await ok([...g, 'info', '--format', '{{.Store.GraphDriverName}} {{.Store.ImageStore.Number}} {{.Store.ContainerStore.Number}}']), 'overlay 2 1\n');

  // rm: podman's alias, several ids, -f unmounts first; an id that does not exist → 1.
  await ok([...g, 'mount', 'web']);
  const rm = await ogd([...g, 'rm', '-f', 'web', 'nope']);
  assert.equal(rm.code, 1, rm.stderr);
  assert.equal(rm.stdout, `${id}\n`);
  assert.equal(rm.stderr, 'ogd rm: layer "nope" does not exist [ERR_OGD_LAYER_NOT_FOUND]\n');
  await ok([...g, 'cleanup']);
});

test('login checks credentials against the registry and writes the auth file podman and skopeo read; logout removes them', async (t) => {
  if (skipWithout(t, 'docker-registry', 'htpasswd', 'skopeo')) return;
  const dir = await tempDir(t, 'ogd-cli-login-');
  const registry = await startRegistry(t, { htpasswd: { user: 'ann', password: 's3cret' } });
  const runtime = join(dir, 'runtime');
  await mkdir(runtime, { mode: 0o700 });
  // Nothing of the machine's own auth files: an empty HOME, our own XDG_RUNTIME_DIR.
  const env = { HOME: join(dir, 'home'), XDG_RUNTIME_DIR: runtime, XDG_CONFIG_HOME: join(dir, 'config'), REGISTRY_AUTH_FILE: '', DOCKER_CONFIG: '' };
  const authFile = join(runtime, 'containers', 'auth.json');
  const login = ['login', '--tls-verify=false', '-u', 'ann', '--password-stdin', registry.host];

  await fails(login, 125, /refused the credentials of "ann" \[ERR_OGD_REGISTRY\]/, { env, input: 'wrong\n' });
  await assert.rejects(readFile(authFile), { code: 'ENOENT' }, 'refused credentials are not kept');
  assert.equal(await ok(login, { env, input: 's3cret\n' }), 'Login Succeeded!\n');
  const written = JSON.parse(await readFile(authFile, 'utf8')) as { auths: Record<string, { auth: string }> };
  assert.deepEqual(written.auths, { [registry.host]: { auth: Buffer.from('ann:s3cret').toString('base64') } });
  // skopeo reads the same file, as podman does.
  const { stdout } = await run('skopeo', ['login', '--get-login', registry.host], { env: { ...process.env, ...env } });
  assert.equal(stdout, 'ann\n');
  assert.equal(await ok(['login', '--get-login', registry.host], { env }), 'ann\n');

  assert.equal(await ok(['logout', registry.host], { env }), `Removed login credentials for ${registry.host}\n`);
  assert.deepEqual((JSON.parse(await readFile(authFile, 'utf8')) as { auths: object }).auths, {});

  // docker's config.json is read: a login with nothing given checks what it holds; logout cannot remove it.
  await mkdir(join(env.HOME, '.docker'), { recursive: true });
  await writeFile(join(env.HOME, '.docker', 'config.json'), JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from('ann:s3cret').toString('base64') } } }));
  assert.equal(await ok(['login', '--tls-verify=false', registry.host], { env }), `Existing credentials are valid. Already logged in to ${registry.host}\n`);
  await fails(['logout', registry.host], 125, /not logged in to .*config\.json has, which ogd only reads .*\[ERR_OGD_NOT_LOGGED_IN\]/, { env });
  // A registry behind a token server: the login's token (no scope) is fetched with the credentials and the registry checks it.
  if (have('openssl')) {
    const tokens = await startTokenServer(t, dir, 'bob', 'pw');
    const tokenRegistry = await startRegistry(t, { token: tokens });
    await fails(['login', '--tls-verify=false', '-u', 'bob', '-p', 'nope', tokenRegistry.host], 125, /ERR_OGD_REGISTRY/, { env });
    assert.equal(await ok(['login', '--tls-verify=false', '-u', 'bob', '-p', 'pw', tokenRegistry.host], { env }), 'Login Succeeded!\n');
  }
  // --authfile names the file to write.
  const other = join(dir, 'other.json');
  await ok(['login', '--tls-verify=false', '-u', 'ann', '-p', 's3cret', '--authfile', other, registry.host], { env });
  assert.ok((JSON.parse(await readFile(other, 'utf8')) as { auths: object }).auths[registry.host as never] !== undefined);
});
