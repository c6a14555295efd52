// A test hook, and nothing else: with OGD_TEST_KILL_AT=<point> set, the process kills
// itself with SIGKILL when it reaches <point>, so the kill tests can stop a command at
// an exact step (test/store-kill.test.ts). Points: 'after-create' (an import's record
// and empty layer exist), 'after-rename' (the driver's apply is in place, its record
// not yet committed), 'record-write' (a record's temp file is written, not renamed),
// 'after-mount' (mounted and its reference written, in one native job; nothing reported yet), 'remove-marked' (a remove has
// marked its layer incomplete and deleted nothing yet), 'pull-layers-done' (every layer
// of a pull is committed, its image record not yet written), 'rmi-marked' (an image
// removal has marked its record incomplete and removed nothing yet).
export type KillPoint = 'after-create' | 'after-rename' | 'record-write' | 'after-mount' | 'remove-marked' | 'pull-layers-done' | 'rmi-marked';

// Read where it is used (an env lookup is cheap beside any of these steps), not kept from module load.
export function killPoint(point: KillPoint): void {
  if (process.env['OGD_TEST_KILL_AT'] === point) process.kill(process.pid, 'SIGKILL');
}
