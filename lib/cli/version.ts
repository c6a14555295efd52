// `ogd --version`: what a bug report needs in one go: this package's version, the
// Node and N-API versions, which addon binary node-gyp-build picked (a prebuild or a
// local build) and what the kernel's overlayfs offers (its module parameters are the
// defaults of the features a mount can ask for).
import { readFile, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { release } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root, from dist/lib/cli/version.js. */
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const OVERLAY_PARAMETERS = '/sys/module/overlay/parameters';

export interface VersionInfo {
  ogd: string;
  node: string;
  /** N-API version this Node offers, and the one the addon is built against (binding.gyp's NAPI_VERSION). */
  napi: { node: number; addon: number | null };
  /** Node's module ABI (process.versions.modules); N-API addons do not depend on it. */
  abi: string;
  /** The addon binary node-gyp-build resolves, relative to the package; null when none is found. */
  addon: string | null;
  kernel: string;
  overlay: {
    available: boolean;
    /** /sys/module/overlay/parameters: e.g. { metacopy: "N", redirect_dir: "N", index: "N" }; empty when overlay is built in without them or not loaded. */
    parameters: Record<string, string>;
  };
}

export async function versionInfo(): Promise<VersionInfo> {
  const pkg = JSON.parse(await readFile(join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  const gyp = await readFile(join(packageRoot, 'binding.gyp'), 'utf8').catch(() => '');
  const addonNapi = /NAPI_VERSION=(\d+)/.exec(gyp)?.[1];
  let addon: string | null = null;
  try {
    const nodeGypBuild = createRequire(import.meta.url)('node-gyp-build') as { path(dir: string): string };
    addon = relative(packageRoot, nodeGypBuild.path(packageRoot));
  } catch {
    // no binary for this platform: reported as null
  }
  const filesystems = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  const parameters: Record<string, string> = {};
  for (const name of (await readdir(OVERLAY_PARAMETERS).catch(() => [] as string[])).sort()) {
    parameters[name] = (await readFile(join(OVERLAY_PARAMETERS, name), 'utf8').catch(() => '?')).trim();
  }
  return {
    ogd: pkg.version,
    node: process.version,
    napi: { node: Number(process.versions.napi), addon: addonNapi === undefined ? null : Number(addonNapi) },
    abi: process.versions.modules,
    addon,
    kernel: release(),
    overlay: { available: filesystems.split('\n').includes('nodev\toverlay'), parameters },
  };
}

export function formatVersion(v: VersionInfo): string {
  const params = Object.entries(v.overlay.parameters).map(([k, val]) => `${k}=${val}`);
  return [
    `ogd ${v.ogd} (overlay-graphdriver)`,
    `node ${v.node}, N-API ${v.napi.node} (addon needs ${v.napi.addon ?? '?'}), ABI ${v.abi}`,
    `addon ${v.addon ?? 'not found (npm rebuild overlay-graphdriver)'}`,
    `kernel ${v.kernel}, overlay ${v.overlay.available ? 'available' : 'not loaded (modprobe overlay)'}`,
    ...(params.length > 0 ? [`overlay parameters: ${params.join(' ')}`] : []),
    '',
  ].join('\n');
}
