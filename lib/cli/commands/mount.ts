// `ogd mount` / `ogd unmount`. A mount made by `ogd mount` outlives its process, so it
// is a detached reference in the store (counted with every other holder's, checked
// against the kernel's mount table): each `ogd mount` adds one, each `ogd unmount`
// releases one, and the last live reference of any holder unmounts. An image needs no
// mount (its path is a plain tree) but is counted the same way, so the pair stays
// symmetric and a counted image is not removed under its user.
import { stringOption } from '../command.js';
import type { Command } from '../command.js';

export const mount: Command = {
  name: 'mount',
  usage: 'mount ID [--label L]',
  summary: "mount the layer (if it needs it) and print its filesystem's path",
  example: 'cd "$(ogd mount web-1)"',
  options: { label: { type: 'string', value: 'L', help: 'SELinux mount label', byDefault: "the layer's own" } },
  positionals: [1, 1],
  async run(ctx, [arg], values) {
    const store = await ctx.store();
    const id = await store.resolveLayer(arg!);
    const label = stringOption(values, 'label');
    const path = await store.mount(id, { detached: true, ...(label !== undefined ? { mountLabel: label } : {}) });
    ctx.result({ id, path });
    ctx.say(path);
  },
};

export const unmount: Command = {
  name: 'unmount',
  usage: 'unmount ID [--force] [--lazy]',
  summary: 'release one `ogd mount` of the layer; the last reference unmounts it (--force: drop every holder and unmount now; --lazy: detach even if busy)',
  example: 'ogd unmount web-1',
  options: {
    force: { type: 'boolean', help: "drop every holder's references and unmount now" },
    lazy: { type: 'boolean', help: 'detach the mount even while something uses it' },
  },
  positionals: [1, 1],
  async run(ctx, [arg], values) {
    const store = await ctx.store();
    const id = await store.resolveLayer(arg!);
    const r = await store.unmount(id, { detached: true, force: values['force'] === true, lazy: values['lazy'] === true });
    ctx.result({ id, released: r.released, mounted: r.mounted, references: r.references, holders: r.holders });
    if (!r.released) {
      const others = r.holders.filter((h) => !h.detached).map((h) => `pid ${h.pid}`);
      ctx.say(others.length > 0 ? `${id} is not held by ogd mount (held by ${others.join(', ')}); nothing released` : `${id} was not mounted`);
    } else {
      ctx.say(r.references > 0 ? `${id} stays mounted (${r.references} more)` : `unmounted ${id}`);
    }
  },
};
