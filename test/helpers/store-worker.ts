// One process of the multi-process store test (test/store-multiprocess.test.ts): runs
// `ops` random operations on a shared home, through the library ('lib') or the ogd
// binary ('cli'), and prints a JSON summary: the operations done, the unexpected
// errors, and any sign that a peer damaged this process's mount (a path that stopped
// being an overlay mount while this process held it).
import { createReadStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { prng } from '../../bench/lib.js';
import { openStore } from '../../lib/index.js';
import { FsMagic, fsMagic } from '../../lib/fs-magic.js';
import { ogd } from './ogd-cli.js';
import { pack } from './tar-builder.js';

const [home, seedArg, opsArg, mode, name] = process.argv.slice(2) as [string, string, string, 'lib' | 'cli', string];
const random = prng(Number(seedArg));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
const EXPECTED = /ERR_OGD_LAYER_(EXISTS|NOT_FOUND|IN_USE)/;
const images = ['i0', 'i1', 'i2'];
const containers = ['c0', 'c1', 'c2'];
const summary = { name, ops: 0, ok: 0, refused: 0, unexpected: [] as string[], damaged: [] as string[] };
const tarFile = join(home, '..', `${name}.tar`);
await writeFile(tarFile, await pack(Array.from({ length: 20 }, (_, i) => ({ name: `d/${name}-${i}`, content: `${name} ${i}\n` }))));

const isOverlay = async (p: string) => (await fsMagic(p).catch(() => 0)) === FsMagic.overlayfs;

async function useMount(path: string, id: string, tag: string): Promise<void> {
  if (!(await isOverlay(path))) summary.damaged.push(`${tag}: ${id} at ${path} not mounted right after mount`);
  const file = join(path, `${name}-${summary.ops}`);
  await writeFile(file, tag);
  if ((await readFile(file, 'utf8')) !== tag || !(await isOverlay(path))) summary.damaged.push(`${tag}: ${id} lost its mount while held`);
}

async function libOps(n: number): Promise<void> {
  const s = await openStore(home);
  const held: string[] = [];
  let img0 = images[0]!;
  const run = async (tag: string, op: () => Promise<unknown>) => {
    summary.ops++;
    try {
      await op();
      summary.ok++;
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (EXPECTED.test(code)) summary.refused++;
      else summary.unexpected.push(`${tag}: ${String(err)}`);
    }
  };
  for (let i = 0; i < n; i++) {
    // The first two operations of each process fill the store: an import, a container on it.
    const r = i === 0 ? 0 : i === 1 ? 0.2 : random();
    const img = pick(images);
    const ctr = pick(containers);
    if (i === 0) img0 = img;
    if (r < 0.15) await run(`import ${img}`, async () => s.importLayer(img, createReadStream(tarFile), i > 0 && random() < 0.5 ? { parent: pick(images) } : {}));
    else if (r < 0.3) await run(`create ${ctr}`, () => s.create(ctr, { parent: i === 1 ? img0 : pick(images), kind: 'container' }));
    else if (r < 0.5)
      await run(`mount ${ctr}`, async () => {
        const p = await s.mount(ctr);
        await useMount(p, ctr, `lib ${name} mount ${ctr}`);
        if (random() < 0.5) held.push(ctr);
        else await s.unmount(ctr);
      });
    else if (r < 0.6) {
      // A held one, or one this process does not hold (which releases nothing).
      const id = held.shift() ?? ctr;
      await run(`unmount ${id}`, async () => s.unmount(id));
    } else if (r < 0.75) await run('remove', () => s.remove(pick([...images, ...containers])));
    else if (r < 0.85) await run('changes', () => s.changes(pick([...images, ...containers])));
    else if (r < 0.92) await run('diff', () => s.diffSize(pick([...images, ...containers])));
    else await run(`apply-diff ${img}`, async () => s.applyDiff(img, createReadStream(tarFile)));
  }
  for (const id of held) await run(`unmount ${id}`, () => s.unmount(id));
  await s.cleanup();
}

async function cliOps(n: number): Promise<void> {
  const cli = async (tag: string, args: string[]): Promise<string | undefined> => {
    summary.ops++;
    const r = await ogd(['--home', home, ...args]);
    if (r.code === 0) {
      summary.ok++;
      return r.stdout;
    }
    if (EXPECTED.test(r.stderr)) summary.refused++;
    else summary.unexpected.push(`${tag}: ${r.stderr.trim()}`);
    return undefined;
  };
  for (let i = 0; i < n; i++) {
    const r = i === 0 ? 0 : i === 1 ? 0.2 : random();
    const img = pick(images);
    const ctr = pick(containers);
    if (r < 0.15) await cli(`import ${img}`, ['import', img, ...(random() < 0.5 ? ['--parent', pick(images)] : []), tarFile]);
    else if (r < 0.3) await cli(`create ${ctr}`, ['create', ctr, '--parent', pick(images), '--rw']);
    else if (r < 0.6) {
      const out = await cli(`mount ${ctr}`, ['mount', ctr]);
      if (out !== undefined) {
        await useMount(out.trim(), ctr, `cli ${name} mount ${ctr}`);
        await cli(`unmount ${ctr}`, ['unmount', ctr]);
      }
    } else if (r < 0.75) await cli('remove', ['remove', pick([...images, ...containers])]);
    else if (r < 0.85) await cli('changes', ['changes', pick([...images, ...containers])]);
    else if (r < 0.92) await cli('diff', ['diff', pick([...images, ...containers]), '-o', '/dev/null']);
    else await cli(`apply-diff ${img}`, ['apply-diff', img, tarFile]);
  }
}

if (mode === 'lib') await libOps(Number(opsArg));
else await cliOps(Number(opsArg));
process.stdout.write(JSON.stringify(summary) + '\n');
