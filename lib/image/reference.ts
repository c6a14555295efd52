// Image references in skopeo's transport syntax, the users' habit:
//   docker://HOST[:PORT]/REPO[:TAG][@DIGEST]   (docker://alpine means docker.io/library/alpine:latest)
//   oci:DIR[:REF]                               (REF: the org.opencontainers.image.ref.name of one image)
// Held strictly to the distribution spec's grammar (repository components, tags, 255
// bytes of name) before any of it becomes part of a URL or a path.
import { InvalidReferenceError } from '../errors.js';
import { isDigest, type Digest } from './digest.js';

export interface DockerReference {
  transport: 'docker';
  /** Registry host as written, with its port ("127.0.0.1:5000", "docker.io"). */
  registry: string;
  /** Repository path ("library/debian"). */
  repository: string;
  /** Tag, "latest" when neither a tag nor a digest is given. */
  tag: string | undefined;
  digest: Digest | undefined;
}

export interface OciLayoutReference {
  transport: 'oci';
  /** The layout directory. */
  dir: string;
  /** The image's org.opencontainers.image.ref.name; undefined: the layout's only image (source) or no name (destination). */
  ref: string | undefined;
}

export type ImageReference = DockerReference | OciLayoutReference;

/** distribution/reference: path-component = alpha-numeric (separator alpha-numeric)*, separator = [_.] | __ | [-]* */
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const MAX_NAME_LENGTH = 255;
/** image-spec annotations.md: ref ::= component ("/" component)*, component ::= alphanum (separator alphanum)*, separator ::= [-._:@+] | "--" */
const OCI_REF = /^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:\/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$/;

export const DOCKER_HUB = 'docker.io';

export function parseReference(ref: string): ImageReference {
  if (typeof ref !== 'string') throw new InvalidReferenceError(String(ref), 'must be a string');
  if (ref.startsWith('docker://')) return parseDocker(ref, ref.slice('docker://'.length));
  if (ref.startsWith('oci:')) return parseOci(ref, ref.slice('oci:'.length));
  throw new InvalidReferenceError(ref, 'expected docker://HOST/REPO[:TAG|@DIGEST] or oci:DIR[:TAG]');
}

function parseDocker(whole: string, rest: string): DockerReference {
  const bad = (why: string) => new InvalidReferenceError(whole, why);
  if (rest.includes('\0') || /\s/.test(rest)) throw bad('contains whitespace or NUL');
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) throw bad(`digest ${JSON.stringify(d)} is not sha256:<64 hex> or sha512:<128 hex>`);
    digest = d;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    if (!TAG.test(tag)) throw bad(`tag ${JSON.stringify(tag)} does not match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
    rest = rest.slice(0, colon);
  }
  const parts = rest.split('/');
  let registry: string;
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    parts.shift();
    validateRegistry(whole, registry);
  } else {
    registry = DOCKER_HUB;
    if (parts.length === 1) parts.unshift('library');
  }
  for (const c of parts) {
    if (!PATH_COMPONENT.test(c)) throw bad(`repository component ${JSON.stringify(c)} must be lowercase letters and digits, joined by ".", "_", "__" or "-"`);
  }
  const repository = parts.join('/');
  if (registry.length + 1 + repository.length > MAX_NAME_LENGTH) throw bad(`the name is longer than ${MAX_NAME_LENGTH} characters`);
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { transport: 'docker', registry, repository, tag, digest };
}

function validateRegistry(whole: string, registry: string): void {
  const bad = (why: string) => new InvalidReferenceError(whole, why);
  let host = registry;
  const m = /^(.*):([0-9]+)$/.exec(registry);
  if (m !== null) {
    host = m[1]!;
    const port = Number(m[2]);
    if (port < 1 || port > 65535) throw bad(`port ${m[2]} is out of range`);
  }
  if (host.startsWith('[') && host.endsWith(']')) {
    if (!/^[0-9a-fA-F:.]+$/.test(host.slice(1, -1))) throw bad(`bad IPv6 address ${host}`);
    return;
  }
  if (host === '' || !host.split('.').every((c) => DOMAIN_COMPONENT.test(c))) throw bad(`bad registry host ${JSON.stringify(host)}`);
}

function parseOci(whole: string, rest: string): OciLayoutReference {
  // As containers/image: the directory ends at the first ':'.
  const colon = rest.indexOf(':');
  const dir = colon < 0 ? rest : rest.slice(0, colon);
  const ref = colon < 0 ? undefined : rest.slice(colon + 1);
  if (dir === '' || dir.includes('\0')) throw new InvalidReferenceError(whole, 'needs a directory: oci:DIR[:TAG]');
  if (ref !== undefined && !OCI_REF.test(ref)) throw new InvalidReferenceError(whole, `image name ${JSON.stringify(ref)} is not a valid org.opencontainers.image.ref.name`);
  return { transport: 'oci', dir, ref };
}

/** The reference back in skopeo's syntax (normalised: docker.io/library/…, :latest). */
export function formatReference(r: ImageReference): string {
  if (r.transport === 'oci') return `oci:${r.dir}${r.ref !== undefined ? `:${r.ref}` : ''}`;
  return `docker://${r.registry}/${r.repository}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${r.digest}` : ''}`;
}
