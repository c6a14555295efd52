// A stand-in for `ogd copy SRC DST [--hardlink] [--threads N]` when the CLI is not
// built: one fresh process calling copyTree, as the CLI does. bench/copy.ts uses the
// real CLI (dist/lib/cli/main.js) whenever it exists.
import { copyTree } from '../lib/native.js';

const args = process.argv.slice(2);
const threadsAt = args.indexOf('--threads');
const threads = threadsAt >= 0 ? Number(args[threadsAt + 1]) : undefined;
const [src, dst] = args.filter((a, i) => !a.startsWith('--') && !(threadsAt >= 0 && i === threadsAt + 1));
if (!src || !dst) {
  process.stderr.write('usage: copy-cli SRC DST [--hardlink] [--threads N]\n');
  process.exit(2);
}
await copyTree(src, dst, { mode: args.includes('--hardlink') ? 'hardlink' : 'content', ...(threads !== undefined ? { threads } : {}) });
