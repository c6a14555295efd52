// Crash recovery at open, check() and repair() (containers/storage's Store.Check and
// Repair, `podman system check`). All three hold the store lock for writing, so no
// record appears or goes while they look; a layer whose lock a live process holds is
// in the middle of an operation and is left alone (its lock is only ever tried).
//
// recover() (every open) removes only what is certainly debris of a dead process:
// incomplete layers, temp files, staging dirs, and container mounts that have no
// reference at all (a mount or unmount killed halfway) or references to a mount that
// is gone. check() reports everything else too; repair() fixes what it can without
// losing a committed layer's data, except a container whose lower layer is gone (it
// can never be mounted again), which it removes.
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { lock, tryLock } from '../locks.js';
import type { HeldLock } from '../locks.js';
import { isMountPoint, makePrivateMount, readMountInfo } from '../mountinfo.js';
import { describeHolder, holderAlive } from './holders.js';
import { finishRemoval, imageRecords } from './images.js';
import type { LayerStore, MountRef } from './store.js';
import type { LayerRecord, Problem, CheckReport, RepairReport } from './types.js';

interface Finding extends Problem {
  fix(): Promise<void>;
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
async function ifIdle(s: LayerStore, id: string, fn: (held: HeldLock) => Promise<void>): Promise<boolean> {
  const held = await s.tryLayer(id);
  if (held === undefined) return false;
  try {
    await fn(held);
  } finally {
    await held.release();
  }
  return true;
}

async function removeIncomplete(s: LayerStore, id: string): Promise<void> {
  await s.driver.destroy(id);
  await s.files.remove(s.files.mounts, id);
  await s.files.remove(s.files.layers, id);
  await s.files.remove(s.files.incomplete, id);
}

/** What recover() fixes: found without the lock first, so an open with nothing to do takes no write lock. */
async function debris(s: LayerStore, recs: LayerRecord[], full: boolean): Promise<Finding[]> {
  const found: Finding[] = [];
  for (const id of await readdir(s.files.incomplete)) {
    if (recs.some((r) => r.id === id)) continue;
    // A marker without its record: killed before the record was written (nothing else was).
    found.push({
      kind: 'leftover',
      path: join(s.files.incomplete, id),
      message: `marker of an unfinished layer ${JSON.stringify(id)} that was never recorded`,
      repair: 'delete it',
      fix: () => ifIdle(s, id, async () => {
        if ((await s.record(id)) === undefined) await rm(join(s.files.incomplete, id), { force: true });
      }).then(() => undefined),
    });
  }
  for (const r of recs.filter((r) => r.incomplete === true)) {
    found.push({
      kind: 'incomplete-layer',
      id: r.id,
      message: `layer ${JSON.stringify(r.id)} was never finished (or its removal was interrupted)`,
      repair: 'remove it',
      fix: () => ifIdle(s, r.id, async () => {
        if ((await s.record(r.id))?.incomplete === true) await removeIncomplete(s, r.id);
      }).then(() => undefined),
    });
  }
  const images = await imageRecords(s);
  for (const img of images.filter((r) => r.incomplete === true)) {
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
    found.push({ kind: 'leftover', path, message: `temp file ${path} of a process that is gone`, repair: 'delete it', fix: () => rm(path, { force: true }) });
  }
  // The driver sweeps its own at init; check() reports what appeared since.
  for (const path of full ? await s.driver.leftovers() : []) {
    found.push({ kind: 'leftover', path, message: `${path} left by an interrupted apply`, repair: 'delete it', fix: () => s.driver.removeLeftovers() });
  }
  // Only layers with references or a mount need a look: an open of a big store stays cheap.
  const mountPoints = new Set((await readMountInfo()).map((m) => m.mountPoint));
  const prefix = s.driver.home + '/';
  const candidates = new Set(await readdir(s.files.mounts));
  for (const id of candidates) {
    if ((await s.readRefsFile(id)) !== undefined) continue;
    const path = join(s.files.mounts, id);
    found.push({
      kind: 'damaged-reference',
      id,
      path,
      message: `${path} is not a list of mount references`,
      repair: 'delete it (the kernel mount table says what is mounted)',
      fix: () => ifIdle(s, id, () => s.files.remove(s.files.mounts, id)).then(() => undefined),
    });
  }
  for (const m of mountPoints) if (m.startsWith(prefix)) candidates.add(m.slice(prefix.length).split('/')[0]!);
  for (const r of recs.filter((r) => r.incomplete !== true && candidates.has(r.id))) {
    const refs = await s.readRefs(r.id);
    const disk = await s.driver.inspect(r.id);
    if (disk.state !== 'container') continue;
    const mounted = mountPoints.has(disk.path);
    if (mounted && refs.length === 0) {
      found.push({
        kind: 'mount-without-holder',
        id: r.id,
        path: disk.path,
        message: `${disk.path} is mounted but nobody holds it`,
        repair: 'unmount it',
        fix: () => ifIdle(s, r.id, async () => {
          if ((await s.readRefs(r.id)).length === 0) await s.driver.unmountLayer(r.id);
        }).then(() => undefined),
      });
    } else if (!mounted && refs.length > 0) {
      found.push({
        kind: 'stale-reference',
        id: r.id,
        message: `layer ${JSON.stringify(r.id)} has ${refs.length} mount reference(s) but is not mounted`,
        repair: 'drop them',
        fix: () => ifIdle(s, r.id, async () => {
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
    const recs = await Promise.all([...ids].map((id) => s.record(id).catch(() => undefined)));
    return recs.filter((r): r is LayerRecord => r !== undefined);
  };
  if (migrate === undefined && (await debris(s, await candidates(), false)).length === 0) return;
  await underStoreLock(s, async () => {
    await s.migrateV1();
    for (const f of await debris(s, await candidates(), false)) await f.fix().catch(() => undefined);
  });
}

async function findings(s: LayerStore): Promise<Finding[]> {
  const recs = await s.records();
  const found = await debris(s, recs, true);
  const byId = new Map(recs.map((r) => [r.id, r]));
  const cache = new Map<number, string | undefined>();

  for (const r of recs.filter((r) => r.incomplete !== true)) {
    const disk = await s.driver.inspect(r.id);
    if (disk.state === 'missing' || disk.state === 'partial') {
      found.push({
        kind: 'record-without-layer',
        id: r.id,
        message: `layer ${JSON.stringify(r.id)} is recorded but its ${disk.state === 'missing' ? 'directory is missing' : 'directory is half made'}`,
        repair: 'remove the record (and what is left of the directory)',
        fix: () => ifIdle(s, r.id, () => removeIncomplete(s, r.id)).then(() => undefined),
      });
      continue;
    }
    if (disk.state === 'container' && disk.lowerMissing) {
      found.push({
        kind: 'lower-missing',
        id: r.id,
        message: `container layer ${JSON.stringify(r.id)} stands on ${JSON.stringify(disk.lowerId)}, which is gone: it can never be mounted`,
        repair: 'remove the layer',
        fix: () => ifIdle(s, r.id, () => removeIncomplete(s, r.id)).then(() => undefined),
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
      const parentDisk = r.parent === undefined ? undefined : await s.driver.inspect(r.parent);
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
        fix: () => ifIdle(s, r.id, async () => {
          const now = await s.readRefs(r.id);
          const live: MountRef[] = [];
          for (const ref of now) if (await holderAlive(ref)) live.push(ref);
          await s.writeRefs(r.id, live);
          if (live.length === 0) await s.driver.unmountLayer(r.id);
        }).then(() => undefined),
      });
    }
  }

  const committed = new Set(recs.filter((r) => r.incomplete !== true).map((r) => r.id));
  for (const img of (await imageRecords(s)).filter((r) => r.incomplete !== true)) {
    const missing = img.layers.map((l) => l.id).filter((id) => !committed.has(id));
    if (missing.length === 0) continue;
    found.push({
      kind: 'image-layer-missing',
      id: img.id,
      message: `image ${img.names[0] ?? img.id} names layer${missing.length > 1 ? 's' : ''} ${missing.join(', ')}, which ${missing.length > 1 ? 'are' : 'is'} gone${missing.includes(img.topLayer ?? '') ? ' (its top layer): no container can stand on it' : ''}`,
      repair: 'remove the image record (its other layers stay; pull it again to restore it)',
      fix: async () => {
        const held = await tryLock(s.files.imagesLock(), 'write');
        if (held === undefined) return;
        try {
          await s.files.remove(s.files.images, img.id);
        } finally {
          await held.release();
        }
      },
    });
  }

  for (const id of await s.driver.layerIds()) {
    if (byId.has(id)) continue;
    const disk = await s.driver.inspect(id).catch(() => ({ state: 'partial' as const }));
    const usable = disk.state === 'image' || (disk.state === 'container' && !disk.lowerMissing);
    found.push({
      kind: 'layer-without-record',
      id,
      message: `${id} is a layer directory the store has no record of`,
      repair: usable ? 'record it (kind and parent from the disk)' : 'delete it (it is not a usable layer)',
      fix: () => ifIdle(s, id, async () => {
        if ((await s.record(id)) !== undefined) return;
        if (!usable) return s.driver.destroy(id);
        const rec: LayerRecord = {
          id,
          kind: disk.state === 'container' ? 'container' : 'image',
          ...(disk.state === 'container' ? { parent: disk.lowerId } : {}),
          names: [],
          created: new Date().toISOString(),
        };
        await s.files.writeJson(s.files.layers, id, rec, true);
      }).then(() => undefined),
    });
  }

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

async function fixParent(s: LayerStore, id: string, parent: string | undefined): Promise<void> {
  await ifIdle(s, id, async () => {
    const rec = await s.record(id);
    if (rec === undefined) return;
    if (parent === undefined) delete rec.parent;
    else rec.parent = parent;
    await s.files.writeJson(s.files.layers, id, rec, true);
  });
}

function plain(f: Finding): Problem {
  return { kind: f.kind, ...(f.id !== undefined ? { id: f.id } : {}), ...(f.path !== undefined ? { path: f.path } : {}), message: f.message, repair: f.repair };
}

export async function check(s: LayerStore): Promise<CheckReport> {
  const problems = await underStoreLock(s, async () => (await findings(s)).map(plain));
  return { ok: problems.length === 0, problems };
}

export async function repair(s: LayerStore): Promise<RepairReport> {
  const repaired = await underStoreLock(s, async () => {
    const done: Problem[] = [];
    // Records and layers first, then references and mounts: a removed layer's refs go with it.
    for (const f of await findings(s)) {
      await f.fix();
      done.push(plain(f));
    }
    return done;
  });
  const after = await check(s);
  return { repaired, remaining: after.problems };
}
