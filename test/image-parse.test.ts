// The image transport's input rules, without a registry: references in skopeo's
// syntax, digests, chain ids (computed here from the spec's formula), WWW-Authenticate
// challenges, auth files, and manifests/configs/layouts a hostile source could send.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { lookupCredentials, parseChallenges } from '../lib/image/auth.js';
import { DigestVerifier, chainIds, isDigest, layerIdOf, parseDigest, type Digest } from '../lib/image/digest.js';
import { parseConfig, parseManifest, selectPlatform, type ImageIndex } from '../lib/image/manifest.js';
import { parseReference, type DockerReference } from '../lib/image/reference.js';
import { LayoutSource } from '../lib/image/source.js';
import { validateId } from '../lib/ids.js';
import { tempDir } from './helpers/sandbox.js';
import * as native from '../lib/native.js';

const hex = (c: string) => c.repeat(64);
const d = (c: string) => `sha256:${hex(c)}`;

test('docker:// references: normalised as skopeo does, the distribution grammar enforced', () => {
  assert.deepEqual(parseReference('docker://alpine'), { transport: 'docker', registry: 'docker.io', repository: 'library/alpine', tag: 'latest', digest: undefined });
  assert.deepEqual(parseReference('docker://127.0.0.1:5000/a/b-c/d__e:v1.2'), { transport: 'docker', registry: '127.0.0.1:5000', repository: 'a/b-c/d__e', tag: 'v1.2', digest: undefined });
  assert.deepEqual(parseReference(`docker://localhost/x@${d('a')}`), { transport: 'docker', registry: 'localhost', repository: 'x', tag: undefined, digest: d('a') });
  assert.deepEqual((parseReference(`docker://quay.io/org/img:tag@${d('b')}`) as DockerReference).digest, d('b'));
  assert.equal((parseReference('docker://user/img') as DockerReference).registry, 'docker.io');
  for (const bad of [
    'alpine', // no transport
    'docker://',
    'docker://Upper/case',
    'docker://host:5000/a//b',
    'docker://host:5000/a/b:',
    'docker://host:5000/a/b:-tag',
    `docker://host:5000/a/b:${'t'.repeat(129)}`,
    'docker://host:5000/a/b@sha256:abc',
    `docker://host:5000/a/b@md5:${hex('a')}`,
    `docker://host:5000/a/b@sha256:${hex('A')}`,
    'docker://host:99999/a',
    'docker://-bad.host/a',
    'docker://host:5000/../../etc',
    'docker://host:5000/a b',
    `docker://host.io/${'a'.repeat(250)}`,
  ]) {
    assert.throws(() => parseReference(bad), { code: 'ERR_OGD_INVALID_REFERENCE' }, bad);
  }
});

test('oci: references: the directory ends at the first colon; the name follows the ref.name grammar', () => {
  assert.deepEqual(parseReference('oci:/tmp/layout:v1'), { transport: 'oci', dir: '/tmp/layout', ref: 'v1' });
  assert.deepEqual(parseReference('oci:rel/dir'), { transport: 'oci', dir: 'rel/dir', ref: undefined });
  assert.deepEqual(parseReference('oci:/l:quay.io/org/img:1.0'), { transport: 'oci', dir: '/l', ref: 'quay.io/org/img:1.0' });
  for (const bad of ['oci:', 'oci::tag', 'oci:/l:', 'oci:/l:a..b/', 'oci:/l:-x', 'oci:/l:a b']) assert.throws(() => parseReference(bad), { code: 'ERR_OGD_INVALID_REFERENCE' }, bad);
});

test('digests: only canonical sha256/sha512 pass, before any becomes a path', () => {
  assert.ok(isDigest(d('0')));
  assert.ok(isDigest(`sha512:${'f'.repeat(128)}`));
  for (const bad of [`sha256:${hex('0')}0`, `sha256:${'0'.repeat(63)}`, `SHA256:${hex('0')}`, `sha256:../${'0'.repeat(61)}`, `sha384:${'0'.repeat(96)}`, 42, null]) {
    assert.equal(isDigest(bad), false, String(bad));
    assert.throws(() => parseDigest(bad), { code: 'ERR_OGD_INVALID_IMAGE' });
  }
});

test('chain ids follow the image spec, and their hex is a valid layer id', () => {
  const diffs = [d('1'), d('2'), d('3')] as Digest[];
  const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
  const c1 = sha(`${diffs[0]} ${diffs[1]}`);
  const c2 = sha(`${c1} ${diffs[2]}`);
  assert.deepEqual(chainIds(diffs), [diffs[0], c1, c2]);
  const id = layerIdOf(c2 as Digest);
  assert.equal(id, c2.slice(7));
  validateId(id);
});

test('a verifier fails the stream before its end on a wrong digest or size', async () => {
  const data = Buffer.from('layer bytes');
  const good = `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;
  const sink = () => new Writable({ write: (_c, _e, cb) => cb() });
  await pipeline(Readable.from([data]), new DigestVerifier('x', good, data.length), sink());
  await assert.rejects(pipeline(Readable.from([data]), new DigestVerifier('x', d('0') as Digest, data.length), sink()), { code: 'ERR_OGD_DIGEST_MISMATCH' });
  await assert.rejects(pipeline(Readable.from([data, data]), new DigestVerifier('x', good, data.length), sink()), { code: 'ERR_OGD_DIGEST_MISMATCH', message: /more than/ });
  await assert.rejects(pipeline(Readable.from([data.subarray(1)]), new DigestVerifier('x', good, data.length), sink()), { code: 'ERR_OGD_DIGEST_MISMATCH', message: /bytes where/ });
});

test('WWW-Authenticate challenges: Bearer with quoted commas, Basic, several at once', () => {
  assert.deepEqual(parseChallenges('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' } },
  ]);
  assert.deepEqual(parseChallenges('Basic realm="x \\"y\\""'), [{ scheme: 'basic', params: { realm: 'x "y"' } }]);
  assert.deepEqual(
    parseChallenges(['Basic realm=r', 'Bearer realm="t"']).map((c) => c.scheme),
    ['basic', 'bearer'],
  );
  assert.deepEqual(parseChallenges(undefined), []);
});

test('credentials: the first auth file with an entry wins; repository namespaces before the host', async (t) => {
  const dir = await tempDir(t);
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const first = join(dir, 'auth.json');
  const second = join(dir, 'config.json');
  await writeFile(first, JSON.stringify({ auths: { 'reg.example:5000/team': { auth: b64('team:t') }, 'other.example': { auth: b64('o:o') } } }));
  await writeFile(second, JSON.stringify({ auths: { 'https://reg.example:5000': { auth: b64('host:h:with:colons') }, 'https://index.docker.io/v1/': { auth: b64('hub:x') } } }));
  const files = [join(dir, 'missing.json'), first, second];
  assert.deepEqual(await lookupCredentials('reg.example:5000', 'team/app', files), { username: 'team', password: 't' });
  assert.deepEqual(await lookupCredentials('reg.example:5000', 'else/app', files), { username: 'host', password: 'h:with:colons' });
  assert.deepEqual(await lookupCredentials('docker.io', 'library/alpine', files), { username: 'hub', password: 'x' });
  assert.equal(await lookupCredentials('unknown.example', 'a', files), undefined);
});

const manifestOf = (layerType: string, extra: Record<string, unknown> = {}) =>
  Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d('c'), size: 10 },
      layers: [{ mediaType: layerType, digest: d('1'), size: 5 }],
      ...extra,
    }),
  );

test('manifests: known media types only, sane sizes, canonical digests, no type confusion', () => {
  for (const type of ['application/vnd.oci.image.layer.v1.tar', 'application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+zstd', 'application/vnd.docker.image.rootfs.diff.tar.gzip']) {
    assert.equal(parseManifest(manifestOf(type), undefined).kind, 'manifest');
  }
  const refused = (bytes: Buffer, pattern: RegExp, declared?: string) =>
    assert.throws(() => parseManifest(bytes, declared), (err: Error & { code?: string }) => err.code === 'ERR_OGD_INVALID_IMAGE' && pattern.test(err.message));
  refused(manifestOf('application/vnd.oci.image.layer.v1.tar+xz'), /unsupported media type/);
  refused(manifestOf('application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'), /non-distributable/);
  refused(Buffer.from(JSON.stringify({ schemaVersion: 1, name: 'x' })), /schemaVersion/);
  refused(Buffer.from('not json'), /not JSON/);
  refused(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.example+json' })), /unsupported manifest media type/);
  refused(manifestOf('application/vnd.oci.image.layer.v1.tar', { layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: d('1'), size: -1 }] }), /size/);
  refused(manifestOf('application/vnd.oci.image.layer.v1.tar', { layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: 'sha256:../../x', size: 1 }] }), /digest/);
  refused(manifestOf('application/vnd.oci.image.layer.v1.tar', { config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d('c'), size: 5 << 20 } }), /more than/);
  refused(manifestOf('application/vnd.oci.image.layer.v1.tar'), /served as/, 'application/vnd.oci.image.index.v1+json');
  assert.throws(() => parseConfig(Buffer.from(JSON.stringify({ rootfs: { type: 'layers', diff_ids: ['sha256:nope'] } }))), { code: 'ERR_OGD_INVALID_IMAGE' });
  assert.throws(() => parseConfig(Buffer.from(JSON.stringify({ architecture: 'amd64' }))), { code: 'ERR_OGD_INVALID_IMAGE' });
});

test('an index picks the platform; arm64 v8 matches an entry without variant; nothing matching lists what there is', () => {
  const entry = (architecture: string, variant?: string) => ({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: d(architecture === 'amd64' ? 'a' : architecture === 'arm64' ? 'b' : 'c') as Digest,
    size: 1,
    platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) },
  });
  const index: ImageIndex = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [entry('amd64'), entry('arm64'), entry('arm', 'v6')] };
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 'arm64', variant: 'v8' }).digest, d('b'));
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 'amd64' }).digest, d('a'));
  assert.throws(() => selectPlatform(index, { os: 'linux', architecture: 'arm', variant: 'v7' }), {
    code: 'ERR_OGD_INVALID_IMAGE',
    message: /no image for platform linux\/arm\/v7 .*available: linux\/amd64, linux\/arm64, linux\/arm\/v6/,
  });
});

test('OCI layouts: an oversized index.json and a digest that climbs out are refused before reading further', async (t) => {
  const dir = await tempDir(t);
  const big = join(dir, 'big');
  await mkdir(big);
  await writeFile(join(big, 'index.json'), Buffer.alloc((4 << 20) + 1, 0x20));
  await assert.rejects(new LayoutSource({ transport: 'oci', dir: big, ref: undefined }).topManifest(), { code: 'ERR_OGD_INVALID_IMAGE', message: /more than/ });
  const climb = join(dir, 'climb');
  await mkdir(climb);
  await writeFile(join(climb, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: 'sha256:../../../../etc/passwd', size: 1 }] }));
  await assert.rejects(new LayoutSource({ transport: 'oci', dir: climb, ref: undefined }).topManifest(), { code: 'ERR_OGD_INVALID_IMAGE', message: /digest/ });
});

test('OCI layouts: a FIFO where index.json should be is refused, not waited on', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'fifo'));
  await native.mknod(join(dir, 'fifo', 'index.json'), 0o10644, 0, 0);
  await assert.rejects(new LayoutSource({ transport: 'oci', dir: join(dir, 'fifo'), ref: undefined }).topManifest(), { code: 'ERR_OGD_INVALID_IMAGE', message: /regular file/ });
});
