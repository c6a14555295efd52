// Which paths are mount points right now, from /proc/self/mountinfo. The driver's mount
// refcount lives in one process; a later `ogd` process asks the kernel instead.
import { readFile } from 'node:fs/promises';

export async function mountedPaths(): Promise<Set<string>> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const paths = new Set<string>();
  for (const line of info.split('\n')) {
    const field = line.split(' ')[4];
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    if (field !== undefined) paths.add(field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return paths;
}
