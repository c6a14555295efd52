// Applying a 1 GiB layer keeps the process's peak RSS under 200 MB: the layer is
// generated on the fly (never stored as a tar) and applied in a child process whose
// own peak RSS (process.resourceUsage().maxRSS) is what is measured.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';

const run = promisify(execFile);
const GiB = 1 << 30;
const here = dirname(fileURLToPath(import.meta.url));

test('a 1 GiB layer is applied with a peak RSS under 200 MB', async (t) => {
  if (skipUnlessRoot(t)) return;
  const root = await tempDir(t, 'ogd-stream-');
  const child = `
    import { applyTar } from ${JSON.stringify(join(here, '..', 'lib', 'archive', 'apply.js'))};
    import { generatedLayer } from ${JSON.stringify(join(here, 'helpers', 'tar-builder.js'))};
    const bytes = await applyTar(process.argv[1], generatedLayer(${GiB}, ${256 << 20}));
    process.stdout.write(JSON.stringify({ bytes, maxRSS: process.resourceUsage().maxRSS }));
  `;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', child, root], { maxBuffer: 1 << 20 });
  const { bytes, maxRSS } = JSON.parse(stdout) as { bytes: number; maxRSS: number };
  assert.equal(bytes, GiB);
  const files = await readdir(join(root, 'big'));
  assert.equal(files.length, 4);
  let total = 0;
  for (const f of files) total += (await stat(join(root, 'big', f))).size;
  assert.equal(total, GiB);
  const peakMB = (maxRSS * 1024) / 1e6; // maxRSS is in KiB
  t.diagnostic(`peak RSS ${peakMB.toFixed(1)} MB for a ${GiB / 2 ** 20} MiB layer`);
  assert.ok(peakMB < 200, `peak RSS ${peakMB.toFixed(1)} MB`);
});
