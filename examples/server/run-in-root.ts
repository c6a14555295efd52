// Running a command inside a container's root filesystem. Today that is chroot(8),
// as root: a chroot is no sandbox (no namespaces, cgroups or seccomp; a root process
// can leave it), it only makes the container's files the command's "/". Rootless
// operation is not implemented by the store yet; when the store offers a spawn of its
// own (inside the container's user namespace), it becomes another RootRunner and the
// endpoint that calls run() does not change.
import { spawn } from 'node:child_process';

export interface RunRequest {
  /** The program and its arguments, looked up in PATH inside the root. */
  argv: string[];
  /** Killed (the whole process group) after this many milliseconds. */
  timeoutMs: number;
}

export interface RunResult {
  /** null when the command was killed by a signal. */
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Output beyond OUTPUT_LIMIT bytes per stream was dropped. */
  truncated: boolean;
  timedOut: boolean;
}

export interface RootRunner {
  readonly name: string;
  /** Runs argv with `rootfs` as its root; `signal` kills it (the promise then resolves with the signal). */
  run(rootfs: string, req: RunRequest, signal: AbortSignal): Promise<RunResult>;
}

/** Per stream: enough for a command's answer, bounded so a chatty command cannot fill the server's memory. */
const OUTPUT_LIMIT = 1 << 20;

/** A fixed environment: the server's own (tokens, paths) is none of the container's business. */
const CONTAINER_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8' };

export const chrootRunner: RootRunner = {
  name: 'chroot',
  run(rootfs, req, signal) {
    return new Promise((resolve, reject) => {
      // detached: a process group of its own, so a kill reaches what the command forked,
      // and nothing it started keeps the container's mount busy after the run ends.
      const child = spawn('chroot', ['--', rootfs, ...req.argv], { cwd: '/', env: CONTAINER_ENV, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const out = { stdout: [] as Buffer[], stderr: [] as Buffer[], bytes: { stdout: 0, stderr: 0 }, truncated: false };
      const collect = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
        const room = OUTPUT_LIMIT - out.bytes[stream];
        if (chunk.length > room) out.truncated = true;
        if (room <= 0) return;
        const kept = chunk.subarray(0, room);
        out[stream].push(kept);
        out.bytes[stream] += kept.length;
      };
      child.stdout.on('data', collect('stdout'));
      child.stderr.on('data', collect('stderr'));
      const killGroup = () => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        } catch {
          // the group is gone already
        }
      };
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup();
      }, req.timeoutMs);
      const onAbort = () => killGroup();
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) killGroup();
      child.on('error', (err) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        reject(err);
      });
      const finish = (exitCode: number | null, sig: NodeJS.Signals | null) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        resolve({
          exitCode,
          signal: sig,
          stdout: Buffer.concat(out.stdout).toString('utf8'),
          stderr: Buffer.concat(out.stderr).toString('utf8'),
          truncated: out.truncated,
          timedOut,
        });
      };
      // At 'exit' the pipes may still hold output, and a background child of the command
      // may hold them open: the run ends with its process group, then waits for the pipes
      // to drain, but not for a process that left the group (setsid) and keeps them.
      child.on('exit', (exitCode, sig) => {
        killGroup();
        const drained = setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
        }, 1000);
        child.on('close', () => {
          clearTimeout(drained);
          finish(exitCode, sig);
        });
      });
    });
  },
};
