// Who holds a mount reference: a process, named by its pid and its start time (field
// 22 of /proc/PID/stat, clock ticks since boot), so a reused pid is not mistaken for
// the process that took the reference; and a token per Store object, so two stores in
// one process (or a worker thread's) release only their own. A "detached" reference
// (`ogd mount`) has no process: it lasts until `ogd unmount` or until its mount is gone.
import { randomBytes } from 'node:crypto';
import { processStart } from '../processes.js';

export interface Holder {
  /** 0 for a detached reference. */
  pid: number;
  /** /proc/PID/stat starttime, as a decimal string; '' for a detached reference. */
  start: string;
  /** The Store object's token; 'detached' for a detached reference. */
  owner: string;
}

export const DETACHED: Holder = Object.freeze({ pid: 0, start: '', owner: 'detached' });

// This process's own start time never changes: read once.
let self: Promise<{ pid: number; start: string }> | undefined;

/** This process, as a holder (without its owner token). */
export function thisProcess(): Promise<{ pid: number; start: string }> {
  self ??= processStart(process.pid).then((start) => ({ pid: process.pid, start: start ?? '' }));
  return self;
}

export function newOwnerToken(): string {
  return randomBytes(8).toString('hex');
}

export function sameHolder(a: Holder, b: Holder): boolean {
  return a.pid === b.pid && a.start === b.start && a.owner === b.owner;
}

/** True when the holder's process still runs (a detached holder always does). */
export async function holderAlive(h: Holder, cache?: Map<number, string | undefined>): Promise<boolean> {
  if (h.pid === 0) return true;
  let start: string | undefined;
  if (cache?.has(h.pid)) start = cache.get(h.pid);
  else {
    start = await processStart(h.pid);
    cache?.set(h.pid, start);
  }
  return start !== undefined && start === h.start;
}

export function describeHolder(h: Holder): string {
  return h.pid === 0 ? 'ogd mount' : `pid ${h.pid}`;
}
