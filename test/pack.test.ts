// What a user gets from the registry: `npm pack` ships the compiled JS, its type
// declarations (with sources the maps point at), the native sources and the prebuilt
// addon, and nothing of test/ or bench/; installed where no compiler exists, the
// package loads its prebuilt binary (node-gyp-build never falls back to compiling).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, readFile, readdir, realpath, symlink, writeFile, access } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from './helpers/sandbox.js';

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
  if (!(await exists(prebuildDir))) {
    await mkdir(prebuildDir, { recursive: true });
    const built = join(repo, 'build', 'Release', 'ogd_native.node');
    await run('strip', ['--strip-all', '-o', join(prebuildDir, 'overlay-graphdriver.glibc.node'), built]);
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
});
