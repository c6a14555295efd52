// Whether a process is still there, the one check for every part that names files or
// references after a pid (staging dirs, blob downloads, temp files, mount holders).
import { readFile } from 'node:fs/promises';

/**
 * Whether a process `pid` exists (kill(pid, 0)): EPERM means it does, under another
 * user. A pid can be reused; where that matters, compare its start time too
 * (processStart).
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The start time of `pid`, or undefined when no such process runs (or it is a zombie). */
export async function processStart(pid: number): Promise<string | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
  return rest[19]; // field 22 is the 20th after comm
}
