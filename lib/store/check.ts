// Crash recovery at open, check() and repair() (containers/storage's Store.Check and
// Repair, `podman system check`). All three hold the store lock for writing, so no
// record appears or goes while they look; a layer whose lock a live process holds is
// in the middle of an operation and is left alone (its lock is only ever tried).
//
// recover() (every open) removes only what is certainly debris of a dead process:
// layers a dead writer left incomplete (its marker in home/incomplete says the store
// itself set the flag), temp files, staging dirs, a killed commit's blob ingest, a
// pull's partial download once it is too old to resume, and container mounts that
// have no reference at all or references to a mount that is gone.
//
// check() reports everything else too, reading every file as a stranger's
// (lib/store/schema.ts); repair() fixes it, preferring to rebuild: a damaged record of
// a whole layer is made again from the driver's files, an `incomplete` flag on a layer
// that other layers or an image stand on (or that the store never set) is cleared
// when the layer is whole, a damaged image record is made again from its manifest and
// config blobs. What cannot be rebuilt (a container whose lower layer is gone, a
// half-made directory, a record of nothing) goes to home/lost+found, never deleted
// unless `force`. Leftovers in the blob cache are listed with their sizes and deleted.
import { readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createReadStream } from 'node:fs';
import { lock, tryLock } from '../locks.js';
import type { HeldLock } from '../locks.js';
import { isMountPoint, makePrivateMount, readMountInfo } from '../mountinfo.js';
import type { LayerOnDisk } from '../drivers/store-driver.js';
import { blobEntries, blobIntact, PARTIAL_KEEP_MS, type BlobEntry } from './blobs.js';
import { describeHolder, holderAlive } from './holders.js';
import { blobsOf, finishRemoval, imageRecordFiles, rebuildImageRecord, writeRebuiltImage } from './images.js';
import { moveAside } from './lost-found.js';
import { isImageId, isLayerId } from './schema.js';
import type { LayerStore, MountRef } from './store.js';
import type { CheckOptions, CheckReport, ImageRecord, LayerRecord, Problem, RepairOptions, RepairReport } from './types.js';

/** What a fix did, when it differs from what the finding said it would do. */
interface Done {
  repair?: string;
  movedTo?: string;
}

interface Finding extends Problem {
  /** Space, not a problem: a leftover a later pull may still use (check lists it apart). */
  reclaimable?: boolean;
  fix(force: boolean): Promise<Done | void>;
}

async function underStoreLock<T>(s: LayerStore, fn: () => Promise<T>): Promise<T> {
  const held = await lock(s.files.storeLock(), 'write');
  try {
    return await fn();
  } finally {
    await held.release();
  }
}

/** Runs `fn` with the layer's write lock when no live process holds it; skips it otherwise. */
async function ifIdle<T>(s: LayerStore, id: string, fn: (held: HeldLock) => Promise<T>): Promise<T | undefined> {
  const held = await s.tryLayer(id);
  if (held === undefined) return undefined;
  try {
    return await fn(held);
  } finally {
    await held.release();
  }
}

/** Writes a committed record (and drops its marker); under the store lock, which writeRecord would take again. */
async function putRecord(s: LayerStore, rec: LayerRecord): Promise<void> {
  await s.files.writeJson(s.files.layers, rec.id, rec, true);
  await s.files.remove(s.files.incomplete, rec.id);
}

async function removeIncomplete(s: LayerStore, id: string): Promise<void> {
  await s.driver.destroy(id);
  await s.files.remove(s.files.mounts, id);
  await s.files.remove(s.files.layers, id);
  await s.files.remove(s.files.incomplete, id);
}

/** A layer's disk state; a driver that cannot even read it says 'partial'. */
async function inspect(s: LayerStore, id: string): Promise<LayerOnDisk> {
  return s.driver.inspect(id).catch((): LayerOnDisk => ({ state: 'partial' }));
}

function usable(disk: LayerOnDisk): boolean {
  return disk.state === 'image' || (disk.state === 'container' && !disk.lowerMissing);
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) ((v /= 1024), u++);
  return `${v.toFixed(1)} ${units[u]}`;
}

/**
 * Moves what is left of layer `id` (its directory, its record, or the damaged file
 * `recordFile` where its record should be) to lost+found (deleted with `force`), and
 * its marker and references with it. Under the layer's lock.
 */
async function setAside(s: LayerStore, id: string, force: boolean, recordFile = join(s.files.layers, id)): Promise<Done> {
  const dir = await moveAside(s.home, join(s.driver.home, id), `layer-${id}`, force);
  const rec = await moveAside(s.home, recordFile, `record-${id}`, force);
  await s.files.remove(s.files.mounts, id);
  await s.files.remove(s.files.incomplete, id);
  if (force) return { repair: 'deleted it' };
  const where = [dir, rec].filter((p): p is string => p !== undefined);
  return { repair: where.length > 0 ? `moved to ${where.join(' and ')}` : 'nothing was left to move', ...(where[0] !== undefined ? { movedTo: where[0] } : {}) };
}

/** What stands on layer `id`: layers whose record names it as parent, live images made of it. */
function dependents(id: string, recs: readonly LayerRecord[], images: readonly ImageRecord[]): string[] {
  return [
    ...recs.filter((r) => r.parent === id && r.id !== id).map((r) => `layer ${JSON.stringify(r.id)}`),
    ...images.filter((i) => i.incomplete !== true && i.layers.some((l) => l.id === id)).map((i) => `image ${i.names[0] ?? i.id}`),
  ];
}

/**
 * A record for layer `id` made from the disk: an image's layer keeps its place in the
 * image (parent, tar digest), a container stands on its lower layer; the content's
 * size is measured. Names and the mount label are not kept anywhere else.
 */
async function rebuiltRecord(s: LayerStore, id: string, disk: LayerOnDisk, recs: readonly LayerRecord[], images: readonly ImageRecord[]): Promise<LayerRecord> {
  const image = images.find((i) => i.layers.some((l) => l.id === id));
  const at = image?.layers.findIndex((l) => l.id === id) ?? -1;
  const hasChildren = recs.some((r) => r.parent === id);
  const kind = image !== undefined || hasChildren || disk.state === 'image' ? 'image' : 'container';
  const parent = image !== undefined ? (at > 0 ? image.layers[at - 1]!.id : undefined) : disk.state === 'container' ? disk.lowerId : undefined;
  const diffSize = kind === 'image' ? await s.driver.diffSize(id, parent).catch(() => undefined) : undefined;
  const diffId = image?.layers[at]?.diffId;
  return {
    id,
    ...(parent !== undefined ? { parent } : {}),
    kind,
    names: [],
    created: new Date().toISOString(),
    ...(diffSize !== undefined ? { diffSize } : {}),
    ...(diffId !== undefined ? { uncompressedDigest: diffId } : {}),
  };
}

/** The blob cache's leftovers; `full`: all of them (check), else only what an open removes. Skipped while a pull, commit or push is live. */
async function blobLeftovers(s: LayerStore, full: boolean, images: readonly ImageRecord[] | undefined): Promise<Finding[]> {
  const held = await tryLock(s.files.blobsLock(), 'write');
  if (held === undefined) return [];
  let entries: BlobEntry[];
  try {
    entries = await blobEntries(s.files.blobs, !full);
  } finally {
    await held.release();
  }
  const used = new Set(images?.flatMap(blobsOf) ?? []);
  const found: Finding[] = [];
  const remove = (e: BlobEntry) => async () => {
    const again = await tryLock(s.files.blobsLock(), 'write');
    if (again === undefined) return { repair: 'left alone: a pull, commit or push is running' };
    try {
      await rm(e.path, { recursive: e.kind === 'junk', force: true });
    } finally {
      await again.release();
    }
  };
  for (const e of entries) {
    let what: string | undefined;
    let reclaimable = false;
    if (e.kind === 'partial' && !e.writerAlive) {
      if (e.ingest) what = `the blob a killed commit or push was writing`;
      else if (e.ageMs > PARTIAL_KEEP_MS) what = `a partial download of process ${e.pid}, too old to resume`;
      else if (full) ((what = `a partial download of process ${e.pid}, which is gone (the next pull of it resumes there)`), (reclaimable = true));
    } else if (e.kind === 'junk' && full) {
      what = `${e.what} among the blobs`;
    } else if (e.kind === 'blob' && images !== undefined && !used.has(e.digest)) {
      what = 'a blob no image names';
      reclaimable = true;
    }
    if (what === undefined) continue;
    found.push({ kind: 'leftover', path: e.path, size: e.size, message: `${e.path}: ${what} (${bytes(e.size)})`, repair: 'delete it', reclaimable, fix: remove(e) });
  }
  return found;
}

/** What recover() fixes: found without the lock first, so an open with nothing to do takes no write lock. */
async function debris(s: LayerStore, recs: LayerRecord[], full: boolean, images: ImageRecord[] | undefined): Promise<Finding[]> {
  const found: Finding[] = [];
  for (const name of await readdir(s.files.incomplete)) {
    // A marker beside a record (even a damaged one, which check reports itself) is that record's.
    if (recs.some((r) => r.id === name) || (isLayerId(name) && (await s.readRecord(name)).state !== 'missing')) continue;
    const path = join(s.files.incomplete, name);
    if (!isLayerId(name)) {
      found.push({ kind: 'leftover', path, message: `${path} names no layer`, repair: 'delete it', fix: () => rm(path, { recursive: true, force: true }) });
      continue;
    }
    // A marker without its record: killed before the record was written (nothing else was).
    found.push({
      kind: 'leftover',
      path,
      message: `marker of an unfinished layer ${JSON.stringify(name)} that was never recorded`,
      repair: 'delete it',
      fix: () =>
        ifIdle(s, name, async () => {
          if ((await s.readRecord(name)).state === 'missing') await rm(path, { recursive: true, force: true });
        }).then(() => undefined),
    });
  }
  const markers = new Set(await readdir(s.files.incomplete));
  for (const r of recs.filter((r) => r.incomplete === true)) {
    // The store sets the flag only with its marker made first: a flag without one was not the store's.
    const marked = markers.has(r.id);
    const standing = full && images !== undefined ? dependents(r.id, recs, images) : [];
    const disk = full ? await inspect(s, r.id) : undefined;
    const keep = !marked || standing.length > 0;
    found.push({
      kind: 'incomplete-layer',
      id: r.id,
      message: `layer ${JSON.stringify(r.id)} is marked incomplete${marked ? ' (never finished, or its removal was interrupted)' : ', a flag the store never set'}${standing.length > 0 ? `, but ${standing.join(', ')} stand${standing.length > 1 ? '' : 's'} on it` : ''}`,
      repair: !keep ? 'remove it' : disk !== undefined && usable(disk) ? 'clear the flag (the layer is whole)' : 'move it to lost+found',
      fix: (force) =>
        ifIdle(s, r.id, async (): Promise<Done | void> => {
          const now = await s.readRecord(r.id);
          if (now.state !== 'ok' || now.value.incomplete !== true) return;
          const isMarked = (await readdir(s.files.incomplete)).includes(r.id);
          const { imageRecords } = await import('./images.js');
          const on = dependents(r.id, await s.records(), await imageRecords(s));
          if (isMarked && on.length === 0) return removeIncomplete(s, r.id);
          // Only a check decides the rest: an open leaves what is not certainly debris.
          if (!full) return { repair: 'left for check --repair' };
          if (usable(await inspect(s, r.id))) {
            const rec = { ...now.value };
            delete rec.incomplete;
            await putRecord(s, rec);
            return { repair: 'cleared the flag (the layer is whole)' };
          }
          return setAside(s, r.id, force);
        }).then((d) => d ?? undefined),
    });
  }
  const allImages = images ?? (await imageRecordFiles(s)).flatMap((r) => (r.state === 'ok' ? [r.value] : []));
  for (const img of allImages.filter((r) => r.incomplete === true)) {
    found.push({
      kind: 'incomplete-image',
      id: img.id,
      message: `the removal of image ${img.names[0] ?? img.id} was interrupted`,
      repair: 'finish it (its own layers, blobs and record)',
      fix: async () => {
        // A live removal holds the images lock: leave it to finish.
        const held = await tryLock(s.files.imagesLock(), 'write');
        if (held === undefined) return;
        try {
          const { imageRecords } = await import('./images.js');
          const now = await imageRecords(s);
          const rec = now.find((r) => r.id === img.id);
          if (rec?.incomplete !== true) return;
          await finishRemoval(s, rec, now, async (id) => {
            // Top first: the layer above was removed a moment ago, so records are read afresh.
            if ((await s.records()).some((r) => r.parent === id) || (await s.readRefs(id)).length > 0) return;
            await ifIdle(s, id, () => removeIncomplete(s, id));
          });
        } finally {
          await held.release();
        }
      },
    });
  }
  for (const path of await s.files.staleTemps()) {
    found.push({ kind: 'leftover', path, message: `temp file ${path} of a process that is gone`, repair: 'delete it', fix: () => rm(path, { recursive: true, force: true }) });
  }
  // The driver sweeps its own at init; check() reports what appeared since.
  for (const path of full ? await s.driver.leftovers() : []) {
    found.push({ kind: 'leftover', path, message: `${path} left by an interrupted apply`, repair: 'delete it', fix: () => s.driver.removeLeftovers() });
  }
  found.push(...(await blobLeftovers(s, full, full ? images : undefined)));
  // Only layers with references or a mount need a look: an open of a big store stays cheap.
  const mountPoints = new Set((await readMountInfo()).map((m) => m.mountPoint));
  const prefix = s.driver.home + '/';
  const candidates = new Set<string>();
  for (const id of await readdir(s.files.mounts)) {
    const path = join(s.files.mounts, id);
    if (isLayerId(id)) {
      candidates.add(id);
      if ((await s.readRefsFile(id)) !== undefined) continue;
    }
    found.push({
      kind: 'damaged-reference',
      ...(isLayerId(id) ? { id } : {}),
      path,
      message: `${path} is not a list of mount references`,
      repair: 'delete it (the kernel mount table says what is mounted)',
      fix: () => (isLayerId(id) ? ifIdle(s, id, () => rm(path, { recursive: true, force: true })).then(() => undefined) : rm(path, { recursive: true, force: true })),
    });
  }
  for (const m of mountPoints) {
    const id = m.startsWith(prefix) ? m.slice(prefix.length).split('/')[0]! : '';
    if (isLayerId(id)) candidates.add(id);
  }
  for (const r of recs.filter((r) => r.incomplete !== true && candidates.has(r.id))) {
    const refs = await s.readRefs(r.id);
    const disk = await inspect(s, r.id);
    if (disk.state !== 'container') continue;
    const mounted = mountPoints.has(disk.path);
    if (mounted && refs.length === 0) {
      found.push({
        kind: 'mount-without-holder',
        id: r.id,
        path: disk.path,
        message: `${disk.path} is mounted but nobody holds it`,
        repair: 'unmount it',
        fix: () =>
          ifIdle(s, r.id, async () => {
            if ((await s.readRefs(r.id)).length === 0) await s.driver.unmountLayer(r.id);
          }).then(() => undefined),
      });
    } else if (!mounted && refs.length > 0) {
      found.push({
        kind: 'stale-reference',
        id: r.id,
        message: `layer ${JSON.stringify(r.id)} has ${refs.length} mount reference(s) but is not mounted`,
        repair: 'drop them',
        fix: () =>
          ifIdle(s, r.id, async () => {
            if (!(await isMountPoint(disk.path).catch(() => false))) await s.writeRefs(r.id, []);
          }).then(() => undefined),
      });
    }
  }
  return found;
}

export async function recover(s: LayerStore): Promise<void> {
  const migrate = await s.files.readJson(s.home, 'layers.json').catch(() => undefined);
  // Only the layers that can hold debris are read: those marked incomplete, and those with references or a mount.
  const candidates = async (): Promise<LayerRecord[]> => {
    const prefix = s.driver.home + '/';
    const ids = new Set([...(await readdir(s.files.incomplete)), ...(await readdir(s.files.mounts))]);
    for (const m of await readMountInfo()) if (m.mountPoint.startsWith(prefix)) ids.add(m.mountPoint.slice(prefix.length).split('/')[0]!);
    const recs = await Promise.all([...ids].filter(isLayerId).map((id) => s.readRecord(id)));
    return recs.flatMap((r) => (r.state === 'ok' ? [r.value] : []));
  };
  if (migrate === undefined && (await debris(s, await candidates(), false, undefined)).length === 0) return;
  await underStoreLock(s, async () => {
    await s.migrateV1();
    for (const f of await debris(s, await candidates(), false, undefined)) await f.fix(false).catch(() => undefined);
  });
}

async function findings(s: LayerStore, opts: CheckOptions): Promise<Finding[]> {
  const files = await s.recordFiles();
  const recs = files.flatMap((r) => (r.state === 'ok' ? [r.value] : []));
  const imageFiles = await imageRecordFiles(s);
  const images = imageFiles.flatMap((r) => (r.state === 'ok' ? [r.value] : []));
  const damagedImages = imageFiles.flatMap((r) => (r.state === 'damaged' ? [r] : []));
  // While an image record is damaged, which blobs it needs is not known (its rebuild reads them): none is a leftover.
  const found = await debris(s, recs, true, damagedImages.length === 0 ? images : undefined);
  const byId = new Map(recs.map((r) => [r.id, r]));
  const cache = new Map<number, string | undefined>();

  for (const f of files) {
    if (f.state !== 'damaged') continue;
    const id = basename(f.path);
    const disk = isLayerId(id) ? await inspect(s, id) : undefined;
    const rebuild = disk !== undefined && usable(disk);
    found.push({
      kind: 'damaged-record',
      ...(isLayerId(id) ? { id } : {}),
      path: f.path,
      message: `${f.path} is not a layer record: ${f.reason}`,
      repair: rebuild ? 'rebuild it from the layer on disk (kind, parent, size measured); the damaged file goes to lost+found' : 'move it (and what is left of its layer) to lost+found',
      fix: async (force) => {
        if (!isLayerId(id)) {
          const to = await moveAside(s.home, f.path, 'record', force);
          return to !== undefined ? { repair: `moved to ${to}`, movedTo: to } : { repair: 'deleted it' };
        }
        return ifIdle(s, id, async (): Promise<Done | void> => {
          const now = await s.readRecord(id);
          if (now.state !== 'damaged') return;
          const disk = await inspect(s, id);
          if (!usable(disk)) return setAside(s, id, force);
          const { imageRecords } = await import('./images.js');
          const rec = await rebuiltRecord(s, id, disk, await s.records(), await imageRecords(s));
          const to = await moveAside(s.home, f.path, `record-${id}`, force);
          await putRecord(s, rec);
          return { repair: `rebuilt it from the disk (${rec.kind}${rec.parent !== undefined ? ` on ${rec.parent}` : ''})${to !== undefined ? `; the damaged file is ${to}` : ''}`, ...(to !== undefined ? { movedTo: to } : {}) };
        }).then((d) => d ?? undefined);
      },
    });
  }

  for (const r of recs.filter((r) => r.incomplete !== true)) {
    const disk = await inspect(s, r.id);
    const restorable = disk.state === 'partial' && r.kind === 'container' && r.parent !== undefined && s.driver.restoreLower !== undefined;
    if (restorable) {
      const parent = r.parent!;
      found.push({
        kind: 'record-without-layer',
        id: r.id,
        message: `container layer ${JSON.stringify(r.id)} is recorded but its directory is not a usable layer (its link to its lower layer is damaged)`,
        repair: `write its link to its lower layer again from its parent ${JSON.stringify(parent)} (else move it to lost+found)`,
        fix: (force) =>
          ifIdle(s, r.id, async (): Promise<Done> => {
            if ((await s.driver.restoreLower!(r.id, parent)) && usable(await inspect(s, r.id))) return { repair: `wrote its link to its lower layer again from its parent ${JSON.stringify(parent)}` };
            return setAside(s, r.id, force);
          }).then((d) => d ?? undefined),
      });
      continue;
    }
    if (disk.state === 'missing' || disk.state === 'partial') {
      found.push({
        kind: 'record-without-layer',
        id: r.id,
        message: `layer ${JSON.stringify(r.id)} is recorded but its ${disk.state === 'missing' ? 'directory is missing' : 'directory is not a usable layer (half made, or its driver files are damaged)'}`,
        repair: disk.state === 'missing' ? 'move the record to lost+found' : 'move the record and the directory to lost+found',
        fix: (force) => ifIdle(s, r.id, () => setAside(s, r.id, force)).then((d) => d ?? undefined),
      });
      continue;
    }
    if (disk.state === 'container' && disk.lowerMissing) {
      found.push({
        kind: 'lower-missing',
        id: r.id,
        message: `container layer ${JSON.stringify(r.id)} stands on ${JSON.stringify(disk.lowerId)}, which is gone: it can never be mounted`,
        repair: 'move the layer (its data and record) to lost+found',
        fix: (force) => ifIdle(s, r.id, () => setAside(s, r.id, force)).then((d) => d ?? undefined),
      });
      continue;
    }
    if (r.parent !== undefined && !byId.has(r.parent)) {
      found.push({
        kind: 'parent-missing',
        id: r.id,
        message: `layer ${JSON.stringify(r.id)} names ${JSON.stringify(r.parent)} as parent, which is gone`,
        repair: disk.state === 'container' ? `set its parent to its lower layer ${JSON.stringify(disk.lowerId)}` : 'forget the parent (an image layer is a full tree)',
        fix: () => fixParent(s, r.id, disk.state === 'container' ? disk.lowerId : undefined),
      });
    } else if (disk.state === 'container' && r.parent !== disk.lowerId) {
      const parentDisk = r.parent === undefined ? undefined : await inspect(s, r.parent);
      const viaParent = parentDisk?.state === 'container' && parentDisk.lowerId === disk.lowerId;
      if (!viaParent) {
        found.push({
          kind: 'parent-mismatch',
          id: r.id,
          message: `container layer ${JSON.stringify(r.id)} is recorded on ${JSON.stringify(r.parent ?? null)} but its lower layer is ${JSON.stringify(disk.lowerId)}`,
          repair: `set its parent to ${JSON.stringify(disk.lowerId)}`,
          fix: () => fixParent(s, r.id, disk.lowerId),
        });
      }
    }
    const refs = await s.readRefs(r.id);
    const dead: MountRef[] = [];
    for (const ref of refs) if (!(await holderAlive(ref, cache))) dead.push(ref);
    if (dead.length > 0 && (disk.state === 'image' || disk.mounted)) {
      found.push({
        kind: 'stale-reference',
        id: r.id,
        message: `layer ${JSON.stringify(r.id)} has mount references of ${dead.map(describeHolder).join(', ')}, which ${dead.length > 1 ? 'are' : 'is'} gone`,
        repair: 'drop them (and unmount the layer when no live holder is left)',
        fix: () =>
          ifIdle(s, r.id, async () => {
            const now = await s.readRefs(r.id);
            const live: MountRef[] = [];
            for (const ref of now) if (await holderAlive(ref)) live.push(ref);
            await s.writeRefs(r.id, live);
            if (live.length === 0) await s.driver.unmountLayer(r.id);
          }).then(() => undefined),
      });
    }
  }

  for (const f of damagedImages) {
    const id = basename(f.path);
    const rebuilt = isImageId(id) ? await rebuildImageRecord(s, id) : undefined;
    found.push({
      kind: 'damaged-image',
      ...(isImageId(id) ? { id } : {}),
      path: f.path,
      message: `${f.path} is not an image record: ${f.reason}`,
      repair: rebuilt !== undefined ? 'rebuild it from its manifest and config blobs (its names are not kept elsewhere: tag it again); the damaged file goes to lost+found' : 'move it to lost+found (its manifest or config blob or a layer is missing: pull the image again)',
      fix: async (force): Promise<Done> => {
        const again = isImageId(id) ? await rebuildImageRecord(s, id) : undefined;
        const to = await moveAside(s.home, f.path, `image-${id}`, force);
        const where = to !== undefined ? `; the damaged file is ${to}` : '';
        if (again !== undefined && (await writeRebuiltImage(s, again))) return { repair: `rebuilt it from its manifest and config blobs (no names)${where}`, ...(to !== undefined ? { movedTo: to } : {}) };
        return to !== undefined ? { repair: `moved to ${to}`, movedTo: to } : { repair: 'deleted it' };
      },
    });
  }

  // A layer whose incomplete flag repair clears (see debris) counts as there.
  const markers = new Set(await readdir(s.files.incomplete));
  const kept = (r: LayerRecord) => r.incomplete !== true || !markers.has(r.id) || dependents(r.id, recs, images).length > 0;
  const committed = new Set(recs.filter(kept).map((r) => r.id));
  for (const img of images.filter((r) => r.incomplete !== true)) {
    const missing = img.layers.map((l) => l.id).filter((id) => !committed.has(id));
    if (missing.length === 0) continue;
    const path = join(s.files.images, img.id);
    found.push({
      kind: 'image-layer-missing',
      id: img.id,
      path,
      message: `image ${img.names[0] ?? img.id} names layer${missing.length > 1 ? 's' : ''} ${missing.join(', ')}, which ${missing.length > 1 ? 'are' : 'is'} gone${missing.includes(img.topLayer ?? '') ? ' (its top layer): no container can stand on it' : ''}`,
      repair: 'move the image record to lost+found (its other layers stay; pull it again to restore it)',
      fix: async (force): Promise<Done | void> => {
        const held = await tryLock(s.files.imagesLock(), 'write');
        if (held === undefined) return;
        try {
          const now = new Set((await s.records()).filter((r) => r.incomplete !== true).map((r) => r.id));
          if (img.layers.every((l) => now.has(l.id))) return { repair: 'nothing: its layers are there' };
          const to = await moveAside(s.home, path, `image-${img.id}`, force);
          return to !== undefined ? { repair: `moved to ${to}`, movedTo: to } : { repair: 'deleted it' };
        } finally {
          await held.release();
        }
      },
    });
  }

  for (const id of await s.driver.layerIds()) {
    if (byId.has(id) || files.some((f) => f.state === 'damaged' && basename(f.path) === id)) continue;
    if (!isLayerId(id)) continue;
    const disk = await inspect(s, id);
    const whole = usable(disk);
    found.push({
      kind: 'layer-without-record',
      id,
      message: `${id} is a layer directory the store has no record of`,
      repair: whole ? 'record it (kind, parent and size from the disk)' : 'move it to lost+found (it is not a usable layer)',
      fix: (force) =>
        ifIdle(s, id, async (): Promise<Done | void> => {
          if ((await s.readRecord(id)).state !== 'missing') return;
          const now = await inspect(s, id);
          if (!usable(now)) return setAside(s, id, force);
          const { imageRecords } = await import('./images.js');
          await putRecord(s, await rebuiltRecord(s, id, now, await s.records(), await imageRecords(s)));
        }).then((d) => d ?? undefined),
    });
  }

  if (opts.deep === true) found.push(...(await deepFindings(s, recs, images)));

  const driverHome = s.driver.home;
  const top = (await readMountInfo()).filter((m) => m.mountPoint === driverHome).at(-1);
  if (s.driver.mountsNothing !== true && (top === undefined || top.shared)) {
    found.push({
      kind: 'home-not-private',
      path: driverHome,
      message: top === undefined ? `${driverHome} is not a mount point (the store's private bind mount is missing)` : `${driverHome} is a shared mount: layer mounts would propagate to other namespaces`,
      repair: 'make it a private bind mount of itself',
      fix: () => makePrivateMount(driverHome),
    });
  }
  return found;
}

/**
 * check --deep: every kept blob hashed against its name, and every image layer whose
 * blob is kept checked through it: the blob's uncompressed tar must hash to the tar
 * digest recorded for the layer (what was applied). A corrupt blob is moved aside (a
 * pull or push makes it again); a layer whose blob is whole but unpacks to another
 * digest is reported (its record or its blob lies; nothing is deleted).
 */
async function deepFindings(s: LayerStore, recs: readonly LayerRecord[], images: readonly ImageRecord[]): Promise<Finding[]> {
  const found: Finding[] = [];
  const held = await tryLock(s.files.blobsLock(), 'write');
  if (held === undefined) return found;
  const intact = new Set<string>();
  try {
    for (const e of await blobEntries(s.files.blobs)) {
      if (e.kind !== 'blob') continue;
      if (await blobIntact(e.path, e.digest).catch(() => false)) {
        intact.add(e.digest);
        continue;
      }
      found.push({
        kind: 'corrupt-blob',
        path: e.path,
        size: e.size,
        message: `${e.path}: its bytes do not hash to ${e.digest}`,
        repair: 'move it to lost+found (a pull fetches it again, a push makes it again from the layer)',
        fix: async (force): Promise<Done> => {
          const to = await moveAside(s.home, e.path, `blob-${e.name}`, force);
          return to !== undefined ? { repair: `moved to ${to}`, movedTo: to } : { repair: 'deleted it' };
        },
      });
    }
    const { openLayer } = await import('../archive/compression.js');
    const byId = new Map(recs.map((r) => [r.id, r]));
    const seen = new Set<string>();
    for (const img of images) {
      for (const l of img.layers) {
        const rec = byId.get(l.id);
        if (seen.has(l.id) || rec === undefined || rec.incomplete === true || !intact.has(l.blob.digest)) continue;
        seen.add(l.id);
        const want = rec.uncompressedDigest ?? l.diffId;
        const path = join(s.files.blobs, 'sha256', l.blob.digest.slice('sha256:'.length));
        const got = await tarDigest(openLayer, path).catch((err: unknown) => `unreadable (${(err as Error).message})`);
        if (got === want && l.diffId === want) continue;
        found.push({
          kind: 'corrupt-layer',
          id: l.id,
          message: `layer ${JSON.stringify(l.id)} of image ${img.names[0] ?? img.id}: its blob ${l.blob.digest} unpacks to ${got}, but ${got !== want ? `the layer was recorded as ${want}` : `the image says ${l.diffId}`}`,
          repair: 'none (report only: remove the image and pull it again)',
          fix: async () => ({ repair: 'left as it is (remove the image and pull it again)' }),
        });
      }
    }
  } finally {
    await held.release();
  }
  return found;
}

/** The sha256 of the uncompressed tar in the blob at `path` (gzip, zstd or plain, told by content). */
async function tarDigest(openLayer: typeof import('../archive/compression.js').openLayer, path: string): Promise<string> {
  const { createHash } = await import('node:crypto');
  const opened = await openLayer(createReadStream(path) as AsyncIterable<Buffer>);
  const hash = createHash('sha256');
  try {
    await pipeline(opened.tar, hash);
  } finally {
    opened.close();
  }
  return `sha256:${hash.digest('hex')}`;
}

async function fixParent(s: LayerStore, id: string, parent: string | undefined): Promise<void> {
  await ifIdle(s, id, async () => {
    const rec = await s.record(id);
    if (rec === undefined) return;
    if (parent === undefined) delete rec.parent;
    else rec.parent = parent;
    await s.files.writeJson(s.files.layers, id, rec, true);
  });
}

function plain(f: Finding, done?: Done | void): Problem {
  return {
    kind: f.kind,
    ...(f.id !== undefined ? { id: f.id } : {}),
    ...(f.path !== undefined ? { path: f.path } : {}),
    message: f.message,
    repair: done?.repair ?? f.repair,
    ...(f.size !== undefined ? { size: f.size } : {}),
    ...(done?.movedTo !== undefined ? { movedTo: done.movedTo } : {}),
  };
}

export async function check(s: LayerStore, opts: CheckOptions = {}): Promise<CheckReport> {
  const found = await underStoreLock(s, () => findings(s, opts));
  const problems = found.filter((f) => f.reclaimable !== true).map((f) => plain(f));
  return { ok: problems.length === 0, problems, reclaimable: found.filter((f) => f.reclaimable === true).map((f) => plain(f)) };
}

/** Rounds of repair: a fix can uncover what the next round fixes (an image set aside leaves blobs no image names). */
const REPAIR_ROUNDS = 3;

export async function repair(s: LayerStore, opts: RepairOptions = {}): Promise<RepairReport> {
  const force = opts.force === true;
  const repaired = await underStoreLock(s, async () => {
    const done: Problem[] = [];
    const seen = new Set<string>();
    for (let round = 0; round < REPAIR_ROUNDS; round++) {
      // Records and layers first, then references and mounts: a removed layer's refs go with it.
      const todo = (await findings(s, opts)).filter((f) => !seen.has(`${f.kind} ${f.id ?? ''} ${f.path ?? ''}`));
      if (todo.length === 0) break;
      for (const f of todo) {
        seen.add(`${f.kind} ${f.id ?? ''} ${f.path ?? ''}`);
        done.push(plain(f, await f.fix(force)));
      }
    }
    return done;
  });
  const after = await check(s, opts);
  return { repaired, remaining: after.problems };
}
