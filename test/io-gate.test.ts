// The IoGate that paces tree walks: a wide tree queues every entry at once, so the
// queue must stay cheap at hundreds of thousands of waiters, and an abort must settle
// them all promptly (a Ctrl-C during `ogd diff` of a 200k-entry layer took over a
// minute when each waiter built its own AbortError and stack).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IoGate } from '../lib/archive/io-gate.js';

const WAITERS = 100_000;

/** CPU milliseconds `body` takes: the machine is shared, and wall time says more about the neighbours than about the queue. */
async function cpuMs(body: () => Promise<unknown>): Promise<number> {
  const start = process.cpuUsage();
  await body();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

test('an abort settles 100k queued operations at once, all with AbortError', async () => {
  const controller = new AbortController();
  const gate = new IoGate(4, controller.signal);
  let ran = 0;
  const op = async (): Promise<void> => {
    ran++;
    await new Promise((resolve) => setImmediate(resolve));
  };
  const all = Array.from({ length: WAITERS }, () => gate.run(op));
  await new Promise((resolve) => setImmediate(resolve));
  let results: Array<PromiseSettledResult<void>> = [];
  const ms = await cpuMs(async () => {
    controller.abort();
    results = await Promise.allSettled(all);
  });
  const rejected = results.filter((r) => r.status === 'rejected');
  assert.ok(rejected.length >= WAITERS - 8, `${rejected.length} rejected`);
  assert.ok(rejected.every((r) => (r.reason as { code?: string }).code === 'ABORT_ERR'));
  assert.ok(ran <= 8, `${ran} operations ran after the abort`);
  // Measured: 0.4 s of CPU here; the old queue (Array#shift, an error per waiter) 7.4 s.
  assert.ok(ms < 2000, `settled in ${Math.round(ms)} ms of CPU`);
});

test('queued operations all run, at most `limit` at a time, in time linear in their number', async () => {
  const runAll = async (n: number): Promise<number> => {
    const gate = new IoGate(8);
    let active = 0;
    let peak = 0;
    const op = async (): Promise<void> => {
      peak = Math.max(peak, ++active);
      await Promise.resolve();
      active--;
    };
    const ms = await cpuMs(() => Promise.all(Array.from({ length: n }, () => gate.run(op))));
    assert.equal(peak, 8);
    return ms;
  };
  const small = await runAll(WAITERS / 4);
  const large = await runAll(WAITERS);
  // Four times the waiters: about four times the CPU (measured 3.1x); the old queue
  // (Array#shift) was quadratic, 15x (0.47 s → 7.2 s).
  assert.ok(large / small < 8, `25k: ${Math.round(small)} ms, 100k: ${Math.round(large)} ms of CPU`);
});
