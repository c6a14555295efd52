// rmi, tag, untag: an image's names, as podman handles them. rmi of a name of an image
// that has other names removes that name only; rmi of an id (or of the last name)
// removes the image; --force also removes an image with several names by id and the
// containers on it that nobody holds mounted. Several images at once: each is tried,
// the first failure is reported after the others ran (podman's habit).
import { ImageNotFoundError } from '../../index.js';
import type { RemoveImageResult } from '../../index.js';
import type { Command } from '../command.js';

const short = (id: string) => id.slice(0, 12);

export const rmi: Command = {
  name: 'rmi',
  usage: 'rmi NAME|ID... [-f]',
  summary: 'remove images (and the layers no other image uses); a name of an image with other names is only untagged; -f: by id even with several names, and its containers nobody holds mounted',
  example: 'ogd rmi debian:bookworm myapp:v1',
  options: { force: { type: 'boolean', short: 'f' } },
  positionals: [1, Infinity],
  async run(ctx, names, values) {
    const store = await ctx.storeIfExists();
    if (store === undefined) throw new ImageNotFoundError(names[0]!);
    const done: RemoveImageResult[] = [];
    let failure: unknown;
    for (const name of names) {
      try {
        const r = await store.removeImage(name, { force: values['force'] === true });
        done.push(r);
        for (const c of r.containers) ctx.say(`removed container ${c}`);
        for (const n of r.untagged) ctx.say(`untagged: ${n}`);
        if (r.removed) ctx.say(`deleted: ${r.id}`);
      } catch (err) {
        failure ??= err;
        if (names.length > 1) process.stderr.write(`ogd rmi: ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
    // One JSON document: the results, or (after a failure) the error.
    if (failure !== undefined) throw failure;
    ctx.result(done);
  },
};

export const tag: Command = {
  name: 'tag',
  usage: 'tag IMAGE NAME...',
  summary: 'give an image more names (a name moves from the image that had it)',
  example: 'ogd tag debian:bookworm myregistry.example.com/debian:stable',
  options: {},
  positionals: [2, Infinity],
  async run(ctx, [src, ...added]) {
    const store = await ctx.storeIfExists();
    if (store === undefined) throw new ImageNotFoundError(src!);
    let info = await store.image(src!);
    for (const n of added) info = await store.tag(info.id, n);
    ctx.result(info);
    ctx.say(`image ${short(info.id)}: ${info.names.join(', ')}`);
  },
};

export const untag: Command = {
  name: 'untag',
  usage: 'untag IMAGE [NAME...]',
  summary: 'remove names from an image (all of them when none are given); the image stays, and without names prune takes it',
  example: 'ogd untag myapp:v1',
  options: {},
  positionals: [1, Infinity],
  async run(ctx, [img, ...names]) {
    const store = await ctx.storeIfExists();
    if (store === undefined) throw new ImageNotFoundError(img!);
    const info = await store.untag(img!, names);
    ctx.result(info);
    ctx.say(`image ${short(info.id)}: ${info.names.length > 0 ? info.names.join(', ') : 'no names left (dangling: prune removes it)'}`);
  },
};
