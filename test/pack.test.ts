// What a user gets from the registry: `npm pack` ships the compiled JS, its type
// declarations (with sources the maps point at), the native sources and the prebuilt
// addon, and nothing of test/ or bench/; installed where no compiler exists, the
// package loads its prebuilt binary (node-gyp-build never falls back to compiling),
// and the linux-arm64 prebuild in the same tarball works in an arm64 Node (under
// qemu-user on x64): store status, copyTree and a layer import, checked on disk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, readdir, realpath, rm, symlink, writeFile, access } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { isRoot, tempDir } from './helpers/sandbox.js';
import { arm64Node, crossBuiltArm64Prebuild } from './helpers/arm64.js';
import { makeFixtureTree } from './helpers/fixture-tree.js';
import { compareManifests, manifest, type CompareOptions } from './helpers/tree.js';

const run = promisify(execFile);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface PackedFile {
  path: string;
}

async function packList(cwd: string): Promise<string[]> {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd });
  const [report] = JSON.parse(stdout) as Array<{ files: PackedFile[] }>;
  return report!.files.map((f) => f.path).sort();
}

/**
 * What npm needs from this process's environment to reach the registry: its cache,
 * registry and CA settings, proxies. Nothing else is passed (npm run exports
 * npm_config_node_gyp, which would hand the install a compiler driver).
 */
function registryEnv(): Record<string, string> {
  const keep = /^(npm_config_(cache|registry|cafile|ca|strict_ssl|userconfig|globalconfig|proxy|https_proxy|noproxy)|NODE_EXTRA_CA_CERTS|https?_proxy|no_proxy|HTTPS?_PROXY|NO_PROXY)$/;
  return Object.fromEntries(Object.entries(process.env).filter((kv): kv is [string, string] => keep.test(kv[0]) && kv[1] !== undefined && kv[1] !== ''));
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

test('npm pack ships dist/lib, declarations, their sources, native sources and prebuilds; no test or bench', async () => {
  const files = await packList(repo);
  for (const needed of ['package.json', 'README.md', 'binding.gyp', 'native/addon.cc', 'native/worker.h', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/lib/cli/main.js']) {
    assert.ok(files.includes(needed), `${needed} is packed`);
  }
  const stray = files.filter((f) => /^(test|bench|dist\/test|dist\/bench|build|node_modules|\.ogd)\//.test(f) || f.endsWith('.tgz'));
  assert.deepEqual(stray, [], 'nothing of test/, bench/, build/ or a store is packed');
  // Every declaration map must point at a source that ships with it.
  for (const map of files.filter((f) => f.endsWith('.d.ts.map'))) {
    const { sources } = JSON.parse(await readFile(join(repo, map), 'utf8')) as { sources: string[] };
    for (const source of sources) {
      const shipped = relative(repo, resolve(repo, dirname(map), source));
      assert.ok(files.includes(shipped), `${map} points at ${shipped}, which is packed`);
    }
  }
  const main = await readFile(join(repo, 'dist/lib/cli/main.js'), 'utf8');
  assert.ok(main.startsWith('#!/usr/bin/env node\n'), 'the bin starts with a node shebang');
});

test('installed from the tarball with no compiler on PATH, the package loads its prebuilt addon', async (t) => {
  const dir = await tempDir(t, 'ogd-pack-');
  const staging = join(dir, 'staging');
  // Stage exactly what npm pack would ship, plus a prebuild when `npm run prebuildify`
  // has not been run in this checkout (made from the development build, stripped).
  for (const file of await packList(repo)) await cp(join(repo, file), join(staging, file), { recursive: true });
  const prebuildDir = join(staging, 'prebuilds', `linux-${process.arch}`);
  const fromPrebuildify = await exists(prebuildDir);
  if (!fromPrebuildify) {
    await mkdir(prebuildDir, { recursive: true });
    const built = join(repo, 'build', 'Release', 'ogd_native.node');
    await run('strip', ['--strip-all', '-o', join(prebuildDir, 'overlay-graphdriver.glibc.node'), built]);
  }
  // The linux-arm64 prebuild as prepack makes it, cross-compiled here when the checkout has none.
  const arm64Dir = join(staging, 'prebuilds', 'linux-arm64');
  let noArm64: string | undefined;
  if (!(await exists(arm64Dir))) {
    const built = await crossBuiltArm64Prebuild(repo);
    if ('reason' in built) noArm64 = built.reason;
    else await cp(built.path, join(arm64Dir, 'overlay-graphdriver.glibc.node'));
  }
  const { stdout: packOut } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: staging });
  const tarball = join(dir, (JSON.parse(packOut) as Array<{ filename: string }>)[0]!.filename);

  // A PATH with node and nothing else: no g++, make, python3 or node-gyp to fall back on.
  const bin = join(dir, 'bin');
  await mkdir(bin);
  await symlink(process.execPath, join(bin, 'node'));
  const npmCli = join(dirname(await realpath((await run('sh', ['-c', 'command -v npm'])).stdout.trim())), 'npm-cli.js');
  const env = { ...registryEnv(), HOME: process.env['HOME'] ?? '/root', PATH: bin, npm_config_script_shell: '/bin/sh', npm_config_update_notifier: 'false' };
  for (const tool of ['g++', 'make', 'python3', 'cc']) {
    await assert.rejects(run('/bin/sh', ['-c', `command -v ${tool}`], { env }), `${tool} is not on the install PATH`);
  }

  const app = join(dir, 'app');
  await mkdir(app);
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  // The dependencies come from the registry (or the cache, when it has them): the test
  // must not depend on what an earlier install left in the cache (`npm ci` fetches
  // tarballs by URL only, so a fresh machine's cache has no packuments).
  await run(process.execPath, [npmCli, 'install', '--no-audit', '--no-fund', '--loglevel=error', tarball], { cwd: app, env, timeout: 180_000 });

  const pkg = join(app, 'node_modules', 'overlay-graphdriver');
  assert.ok(!(await exists(join(pkg, 'build'))), 'nothing was compiled at install (no build/)');
  const probe = `
    import { createRequire } from 'node:module';
    const require = createRequire(${JSON.stringify(join(pkg, 'package.json'))});
    const api = await import('overlay-graphdriver');
    const native = await import('overlay-graphdriver/native');
    const loaded = require('node-gyp-build').resolve(${JSON.stringify(pkg)});
    console.log(JSON.stringify({ loaded, createDriver: typeof api.createDriver, copyTree: typeof api.copyTree, sameCopyTree: native.copyTree === api.copyTree }));
  `;
  const loadedAddon = async (): Promise<string> => {
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', probe], { cwd: app, env });
    return (JSON.parse(stdout) as { loaded: string }).loaded;
  };
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', probe], { cwd: app, env });
  const result = JSON.parse(stdout) as { loaded: string; createDriver: string; copyTree: string; sameCopyTree: boolean };
  assert.equal(relative(pkg, result.loaded), join('prebuilds', `linux-${process.arch}`, 'overlay-graphdriver.glibc.node'));
  assert.equal(result.createDriver, 'function');
  assert.equal(result.copyTree, 'function');
  assert.equal(result.sameCopyTree, true, 'overlay-graphdriver/native exports the same copyTree');

  const { stdout: help } = await run(join(app, 'node_modules', '.bin', 'ogd'), ['--help'], { cwd: app, env });
  assert.match(help, /usage: ogd/);
  const installed = await readdir(join(app, 'node_modules'));
  assert.ok(!installed.includes('node-gyp'), 'node-gyp is not a runtime dependency');

  await t.test(`its linux-${process.arch} prebuild needs only glibc ≤ 2.34 and libgcc_s`, async (t) => {
    if (!fromPrebuildify) return t.skip('the checkout has no prebuilds/ (`npm run prebuildify` makes them; the staged one is the stripped development build)');
    await assertPortable(join(pkg, 'prebuilds', `linux-${process.arch}`, 'overlay-graphdriver.glibc.node'), process.arch === 'arm64' ? 'AArch64' : 'X86-64');
  });

  await t.test('its linux-arm64 prebuild needs only glibc ≤ 2.34 and libgcc_s, and works in an arm64 Node', async (t) => {
    if (noArm64 !== undefined) return t.skip(noArm64);
    const arm64Binary = join(pkg, 'prebuilds', 'linux-arm64', 'overlay-graphdriver.glibc.node');
    await assertPortable(arm64Binary, 'AArch64');
    const node = await arm64Node(repo);
    if ('reason' in node) return t.skip(node.reason);
    if (!isRoot) return t.skip('needs root (the fixture tree has other owners and devices; the layer import recreates them)');
    await runUnderArm64(t, node, app, pkg, dir);
  });

  await t.test("npm 11's strict-allow-scripts: unreviewed, the install fails; denied, the script is skipped and the prebuild loads", async (t) => {
    const { stdout: npmVersion } = await run(process.execPath, [npmCli, '--version'], { env });
    const { stdout: strictDefault } = await run(process.execPath, [npmCli, 'config', 'get', 'strict-allow-scripts'], { env });
    if (!['true', 'false'].includes(strictDefault.trim())) return t.skip(`npm ${npmVersion.trim()} has no strict-allow-scripts setting (npm 11.19 has)`);
    // allowScripts matches a dependency by where it came from: a tarball by its path (a
    // registry package by its name, as README says). Reinstalls are --offline: the
    // lockfile and the cache from the install above have everything.
    const manifestPath = join(app, 'package.json');
    const appManifest = JSON.parse(await readFile(manifestPath, 'utf8')) as Record<string, unknown>;
    const strictInstall = async (allowScripts: Record<string, boolean> | undefined) => {
      await writeFile(manifestPath, JSON.stringify({ ...appManifest, allowScripts }));
      await rm(pkg, { recursive: true, force: true });
      return run(process.execPath, [npmCli, 'install', '--offline', '--no-audit', '--no-fund', '--strict-allow-scripts', '--foreground-scripts', '--loglevel=info'], { cwd: app, env, timeout: 120_000 });
    };
    const scriptRan = /run overlay-graphdriver@[^ ]+ install/;

    await assert.rejects(strictInstall(undefined), (err: { stderr?: string }) => {
      assert.match(err.stderr ?? '', /ESTRICTALLOWSCRIPTS/);
      assert.match(err.stderr ?? '', /overlay-graphdriver@[^ ]+ \(install: /);
      return true;
    });
    assert.ok(!(await exists(pkg)), 'the refused install put nothing in place');

    const denied = await strictInstall({ [`file:${tarball}`]: false });
    assert.doesNotMatch(denied.stdout + denied.stderr, scriptRan, 'a denied install script does not run');
    assert.equal(relative(pkg, await loadedAddon()), join('prebuilds', `linux-${process.arch}`, 'overlay-graphdriver.glibc.node'), 'and the package loads its prebuild');

    const approved = await strictInstall({ [`file:${tarball}`]: true });
    assert.match(approved.stdout + approved.stderr, scriptRan, 'an approved install script runs');
    assert.ok(!(await exists(join(pkg, 'build'))), 'and compiles nothing where a prebuild matches');
  });
});

/**
 * What a slim image has for a prebuild: glibc (2.34 or newer: Debian 12, Ubuntu 22.04,
 * RHEL 9, Amazon Linux 2023) and libgcc_s, which Node itself needs. libstdc++ is linked
 * in (scripts/prebuildify.sh), so no GLIBCXX version is asked of the system's.
 */
async function assertPortable(binary: string, machine: string): Promise<void> {
  const { stdout: header } = await run('readelf', ['-h', binary]);
  assert.match(header, new RegExp(`Machine:.*${machine}`), `${binary} is built for ${machine}`);
  const { stdout: dynamic } = await run('readelf', ['-d', binary]);
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
  assert.deepEqual(
    needed.filter((lib) => !/^(libc\.so\.6|libgcc_s\.so\.1|libm\.so\.6|ld-linux-[\w-]+\.so\.\d)$/.test(lib)),
    [],
    `${binary} needs only glibc and libgcc_s (needs ${needed.join(', ')})`,
  );
  const { stdout: versions } = await run('readelf', ['-V', '-W', binary], { maxBuffer: 16 << 20 });
  assert.doesNotMatch(versions, /GLIBCXX|CXXABI/, 'no symbol of the system libstdc++ is needed');
  const glibc = [...versions.matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => Number(m[1]) * 1000 + Number(m[2]));
  assert.ok(glibc.length > 0 && Math.max(...glibc) <= 2034, `glibc ≤ 2.34 is enough (needs GLIBC_2.${Math.max(...glibc) % 1000})`);
}

/**
 * In the installed package, an arm64 Node opens a vfs store (no mounts: qemu-user runs
 * any syscall, but a store on overlay would only test the host kernel), copies a fixture
 * tree with copyTree and imports GNU tar's archive of it as a layer; both results are
 * then compared on disk with the fixture and with GNU tar's extraction of that archive,
 * through an oracle that shares no code with the addon (test/helpers/manifest.py).
 */
async function runUnderArm64(t: { diagnostic(message: string): void }, node: { command: string; prefix: string[] }, app: string, pkg: string, dir: string): Promise<void> {
  const src = join(dir, 'fixture');
  await mkdir(src);
  const fixture = await makeFixtureTree(src, { deep: false });
  t.diagnostic(`fixture: ${fixture.skipped.length === 0 ? 'complete' : `without ${fixture.skipped.join(', ')}`}`);
  const tar = join(dir, 'fixture.tar');
  await run('tar', ['-c', '--format=posix', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-f', tar, '-C', src, '.']);
  const home = join(dir, 'store');
  const copy = join(dir, 'copy');
  const probe = `
    import { createRequire } from 'node:module';
    import { createReadStream } from 'node:fs';
    const [pkg, home, src, copy, tar] = process.argv.slice(-5);
    const require = createRequire(pkg + '/package.json');
    const { openStore, copyTree } = await import('overlay-graphdriver');
    const loaded = require('node-gyp-build').resolve(pkg);
    const store = await openStore(home, { driver: 'vfs' });
    try {
      const status = store.status();
      const copied = await copyTree(src, copy);
      const layer = await store.importLayer('fixture', createReadStream(tar));
      const metadata = await store.metadata('fixture');
      console.log(JSON.stringify({ arch: process.arch, loaded, status, copied, layer, metadata }));
    } finally {
      await store.cleanup();
    }
  `;
  await writeFile(join(app, 'arm64-probe.mjs'), probe);
  const started = Date.now();
  const { stdout } = await run(node.command, [...node.prefix, 'arm64-probe.mjs', pkg, home, src, copy, tar], { cwd: app, env: { PATH: '/usr/bin:/bin' }, timeout: 120_000 });
  t.diagnostic(`arm64 probe: ${Date.now() - started} ms`);
  const result = JSON.parse(stdout) as {
    arch: string;
    loaded: string;
    status: Array<[string, string]>;
    copied: { entries: number; files: number; symlinks: number };
    layer: { uncompressedSize?: number; uncompressedDigest?: string };
    metadata: Record<string, string>;
  };
  assert.equal(result.arch, 'arm64');
  assert.equal(relative(pkg, result.loaded), join('prebuilds', 'linux-arm64', 'overlay-graphdriver.glibc.node'), 'the arm64 Node loaded the packed arm64 prebuild');
  // containers/storage's names for the filesystem magic GNU stat reports.
  const magic = (await run('stat', ['-f', '-c', '%t', home])).stdout.trim();
  const named: Record<string, string> = { ef53: 'extfs', '1021994': 'tmpfs', '58465342': 'xfs', '9123683e': 'btrfs', '794c7630': 'overlayfs' };
  const backing = result.status.find(([key]) => key === 'Backing Filesystem')?.[1];
  assert.equal(backing, named[magic] ?? backing, `store status names the home's filesystem (magic 0x${magic})`);
  assert.ok(backing !== undefined && backing !== '', 'store status has a Backing Filesystem');

  const source = await manifest(src);
  assert.equal(result.copied.entries, source.size, 'copyTree counted every entry');
  assert.equal(result.copied.files, [...source.values()].filter((e) => e.type === 'file').length);
  assert.deepEqual(compareManifests(source, await manifest(copy)), [], 'the arm64 copyTree made an exact copy');

  const tarBytes = await readFile(tar);
  assert.equal(result.layer.uncompressedSize, tarBytes.length, 'the layer record has the tar size');
  assert.equal(result.layer.uncompressedDigest, `sha256:${createHash('sha256').update(tarBytes).digest('hex')}`);
  const layerRoot = result.metadata['RootDir'];
  assert.ok(layerRoot !== undefined && layerRoot.startsWith(home + '/'), `the layer lives in the store (${layerRoot})`);
  // What the tar holds (GNU tar archives no sockets): GNU tar's own extraction of it.
  const extracted = join(dir, 'gnu-tar-extracted');
  await mkdir(extracted);
  await run('tar', ['-x', '-p', '--same-owner', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-f', tar, '-C', extracted]);
  // The apply recreates only security.capability and user.* xattrs by default (README, Safety).
  const sameAsTar: CompareOptions = {
    mtimeTypes: ['file', 'symlink', 'char', 'block', 'fifo'],
    rootFields: ['mode', 'uid', 'gid', 'xattrs', 'mtime'],
    ignoreXattrs: (name) => name !== 'security.capability' && !name.startsWith('user.'),
  };
  assert.deepEqual(compareManifests(await manifest(extracted), await manifest(layerRoot), sameAsTar), [], 'the arm64 apply made the tree GNU tar extracts');
}
