// rmi, tag, untag: an image's names, as podman handles them. rmi of a name of an image
// that has other names removes that name only; rmi of an id (or of the last name)
// removes the image; --force also removes an image with several names by id and the
// containers on it that nobody holds mounted. Several images at once: each is tried,
// and the exit code says what failed as podman-rmi(1) does: 1 one did not exist, 2 one
// is in use (a container on it, several names by id), 125 anything else.
import { ImageInUseError, ImageNotFoundError } from '../../index.js';
import type { RemoveImageResult } from '../../index.js';
import type { Command } from '../command.js';
import { EXIT_FAILURE, EXIT_IN_USE, EXIT_NO, EXIT_OK } from '../exit-codes.js';
import { failureLine, report, type FailureReport } from '../report.js';

const short = (id: string) => id.slice(0, 12);

export const rmi: Command = {
  name: 'rmi',
  usage: 'rmi NAME|ID... [-f]',
  summary: 'remove images and the layers no other image uses; a name of an image with other names is only untagged; exit 1 if one did not exist, 2 if one is in use',
  example: 'ogd rmi debian:bookworm myapp:v1',
  options: {
    force: { type: 'boolean', short: 'f', help: 'by id even with several names; remove the containers on it nobody holds mounted', byDefault: 'refused' },
  },
  positionals: [1, Infinity],
  async run(ctx, names, values) {
    const store = await ctx.storeIfExists();
    const removed: RemoveImageResult[] = [];
    const errors: FailureReport[] = [];
    let missing = 0;
    let inUse = 0;
    for (const name of names) {
      try {
        if (store === undefined) throw new ImageNotFoundError(name);
        const r = await store.removeImage(name, { force: values['force'] === true });
        removed.push(r);
        for (const c of r.containers) ctx.say(`removed container ${c}`);
        for (const n of r.untagged) ctx.say(`untagged: ${n}`);
        if (r.removed) ctx.say(`deleted: ${r.id}`);
      } catch (err) {
        if (err instanceof ImageNotFoundError) missing++;
        else if (err instanceof ImageInUseError) inUse++;
        else if (ctx.signal.aborted) throw err;
        const r = report(err, ctx.commandName);
        errors.push(r);
        process.stderr.write(failureLine(r, `ogd ${ctx.commandName}`));
      }
    }
    if (ctx.json) process.stdout.write(JSON.stringify(errors.length > 0 ? { error: errors[0], errors, removed } : { removed }, null, 2) + '\n');
    if (errors.length > missing + inUse) return EXIT_FAILURE;
    return inUse > 0 ? EXIT_IN_USE : missing > 0 ? EXIT_NO : EXIT_OK;
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
