// SIGINT (Ctrl-C) and SIGTERM (kill, timeout, systemd) stop a command the same way:
// the first one aborts its AbortSignal, so the command rolls back (a half-imported
// layer removed, a half-written -o FILE never renamed into place) and the process
// exits with 128 + the signal's number. Our handlers are removed at that moment, so
// a second signal gets the kernel's default action and ends the process at once,
// even while the JS thread is busy. A rollback that has not finished after
// GRACE_MS ends the same way, after the sync cleanups commands registered.
import { constants } from 'node:os';

type StopSignal = 'SIGINT' | 'SIGTERM';

/** How long a rollback may take after the first signal before the process gives up on it. */
const GRACE_MS = 5_000;

const cleanups = new Set<() => void>();
let received: StopSignal | undefined;

/** Exit code for a process stopped by `signal`, as shells report it (130 for SIGINT, 143 for SIGTERM). */
export function exitCodeFor(signal: StopSignal): number {
  return 128 + constants.signals[signal];
}

/** The signal that stopped the command, if one did. */
export function stoppedBy(): StopSignal | undefined {
  return received;
}

/**
 * Registers a synchronous cleanup (remove a temp file) to run if the process must end
 * before the command's own rollback finished. Returns its unregistration.
 */
export function onForcedExit(cleanup: () => void): () => void {
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

export function installSignalHandlers(controller: AbortController, warn: (line: string) => void): void {
  const handler = (signal: StopSignal): void => {
    received = signal;
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
    controller.abort(new Error(`stopped by ${signal}`));
    setTimeout(() => {
      warn(`the rollback did not finish within ${GRACE_MS / 1000} s of ${signal}; exiting now`);
      die(signal);
    }, GRACE_MS).unref();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/** Runs the registered cleanups and ends the process by `signal`'s default action. */
function die(signal: StopSignal): never {
  for (const cleanup of cleanups) {
    try {
      cleanup();
    } catch {
      // best effort: the process is going away
    }
  }
  process.kill(process.pid, signal); // our handlers are gone: the default action ends the process
  process.exit(exitCodeFor(signal)); // not reached, unless the signal is blocked
}
