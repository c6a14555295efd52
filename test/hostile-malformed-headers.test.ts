// Headers that lie or are not headers: bad checksums, garbage, compressed data
// given as a tar, negative and absurd sizes, non-octal fields, unknown entry types,
// PAX and GNU long-name headers of megabytes, malformed PAX records, sparse files,
// a zero block inside the archive. Each is refused with InvalidArchiveError — before
// anything is written for the bad entry, and without reading megabytes first.
import { test } from 'node:test';
import { runHostileCase, type HostileCase } from './helpers/hostile.js';
import { skipUnlessRoot } from './helpers/sandbox.js';
import { TarBuilder, base256, header, padding, paxRecords } from './helpers/tar-builder.js';

const ok = (): TarBuilder => new TarBuilder().dir('etc/').file('etc/hosts', '127.0.0.1 localhost\n');

function withPaxBody(body: Buffer): Buffer {
  return ok()
    .raw(Buffer.concat([header({ name: 'pax', typeflag: 'x', size: body.length }), body, padding(body.length)]))
    .file('after', 'x')
    .end();
}

function rawHeader(h: Parameters<typeof header>[0], data = Buffer.alloc(0)): Buffer {
  return ok().raw(Buffer.concat([header(h), data, padding(data.length)])).end();
}

const cases: HostileCase[] = [
  {
    name: 'bad header checksum',
    expect: 'invalid',
    tar: rawHeader({ name: 'x', size: 5, checksum: 1234 }, Buffer.from('pwned')),
  },
  { name: 'random bytes instead of a tar', expect: 'invalid', tar: Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 7919 + 13) % 251)) },
  { name: 'gzip data given as a tar', expect: 'invalid', tar: Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00]), Buffer.alloc(1020, 0x41)]) },
  { name: 'zstd data given as a tar', expect: 'invalid', tar: Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(1020, 0x41)]) },
  { name: 'negative size (base-256)', expect: 'invalid', tar: rawHeader({ name: 'x', rawFields: { size: base256(-512n, 12) } }) },
  { name: 'size beyond 2^53 (base-256)', expect: 'invalid', tar: rawHeader({ name: 'x', rawFields: { size: base256(1n << 60n, 12) } }) },
  { name: 'huge size with the data missing', expect: 'invalid', tar: rawHeader({ name: 'x', rawFields: { size: base256(1n << 40n, 12) } }) },
  { name: 'size field that is not octal', expect: 'invalid', tar: rawHeader({ name: 'x', rawFields: { size: Buffer.from('12345678912x') } }) },
  { name: 'mode field that is not octal', expect: 'invalid', tar: rawHeader({ name: 'x', rawFields: { mode: Buffer.from('0644;rm\0') } }) },
  { name: 'unknown entry type', expect: 'invalid', tar: rawHeader({ name: 'x', typeflag: 'Z' }) },
  { name: 'PAX header of 2 MiB', expect: 'invalid', tar: ok().raw(header({ name: 'pax', typeflag: 'x', size: 2 << 20 })).end() },
  { name: 'GNU long name of 5 MiB', expect: 'invalid', tar: ok().raw(header({ name: '././@LongLink', typeflag: 'L', size: 5 << 20, format: 'gnu' })).end() },
  { name: 'global PAX header of 8 MiB', expect: 'invalid', tar: ok().raw(header({ name: 'g', typeflag: 'g', size: 8 << 20 })).end() },
  { name: 'PAX record longer than its header', expect: 'invalid', tar: withPaxBody(Buffer.from('999 path=x\n')) },
  { name: 'PAX record without a length', expect: 'invalid', tar: withPaxBody(Buffer.from('path=x\n')) },
  { name: 'PAX record without "="', expect: 'invalid', tar: withPaxBody(Buffer.from('9 pathx\n\n')) },
  { name: 'PAX size that is not a number', expect: 'invalid', tar: withPaxBody(paxRecords({ size: '12abc' })) },
  { name: 'PAX uid that is not a number', expect: 'invalid', tar: withPaxBody(paxRecords({ uid: '-1' })) },
  { name: 'PAX mtime that is not a time', expect: 'invalid', tar: withPaxBody(paxRecords({ mtime: '1e99' })) },
  { name: 'GNU sparse file', expect: 'invalid', tar: ok().file('s', 'x', { pax: { 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0' } }).end() },
  { name: 'zero block inside the archive', expect: 'invalid', tar: Buffer.concat([ok().bytes(), Buffer.alloc(512), new TarBuilder().file('late', 'x').end()]) },
  {
    name: 'huge name in a PAX header within the size limit',
    expect: 'invalid',
    tar: ok().file('x', 'y', { pax: { path: ('d'.repeat(200) + '/').repeat(3000) + 'f' } }).end(),
  },
];

for (const c of cases) {
  test(`malformed header: ${c.name}`, async (t) => {
    if (skipUnlessRoot(t)) return;
    await runHostileCase(t, c);
  });
}
