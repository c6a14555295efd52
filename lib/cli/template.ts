// --format TEMPLATE, the part of Go's text/template that podman's and skopeo's users
// type: field paths (`{{.Config.Env}}`, `{{.Id}}`, fields matched exactly, else
// ignoring case), `{{json .X}}`, `{{index .Labels "k"}}`, `{{join .X ","}}`,
// `{{upper .X}}`/`{{lower .X}}`, `{{len .X}}`, `{{range .X}}…{{end}}` (the dot is each
// element), `{{if .X}}…{{else}}…{{end}}`, and `\t`/`\n` in the text. Values print as
// Go prints them: a list as [a b], an object as map[k:v], a missing value as <no value>.
import { UsageError } from './command.js';

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'action'; words: string[] }
  | { kind: 'range'; words: string[]; body: Node[] }
  | { kind: 'if'; words: string[]; then: Node[]; otherwise: Node[] };

/** The template's words: `.A.B`, `json`, a "quoted string". */
function words(action: string, template: string): string[] {
  const out: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|[^\s"]+)/g;
  let m: RegExpExecArray | null;
  let end = 0;
  while ((m = re.exec(action)) !== null) {
    out.push(m[1]!);
    end = re.lastIndex;
  }
  if (action.slice(end).trim() !== '') throw new UsageError(`template ${JSON.stringify(template)}: cannot parse ${JSON.stringify(action)}`);
  return out;
}

function parse(template: string): Node[] {
  const root: Node[] = [];
  const stack: Array<{ node: Extract<Node, { kind: 'range' | 'if' }>; list: Node[] }> = [];
  let list = root;
  const text = (t: string) => {
    if (t !== '') list.push({ kind: 'text', text: t.replace(/\\t/g, '\t').replace(/\\n/g, '\n') });
  };
  let at = 0;
  while (at < template.length) {
    const open = template.indexOf('{{', at);
    if (open === -1) {
      text(template.slice(at));
      break;
    }
    text(template.slice(at, open));
    const close = template.indexOf('}}', open);
    if (close === -1) throw new UsageError(`template ${JSON.stringify(template)}: unclosed "{{"`);
    const w = words(template.slice(open + 2, close).replace(/^-|-$/g, ''), template);
    at = close + 2;
    if (w[0] === 'range' || w[0] === 'if') {
      const node: Extract<Node, { kind: 'range' | 'if' }> = w[0] === 'range' ? { kind: 'range', words: w.slice(1), body: [] } : { kind: 'if', words: w.slice(1), then: [], otherwise: [] };
      list.push(node);
      stack.push({ node, list });
      list = node.kind === 'range' ? node.body : node.then;
    } else if (w[0] === 'else') {
      const top = stack[stack.length - 1];
      if (top?.node.kind !== 'if') throw new UsageError(`template ${JSON.stringify(template)}: {{else}} outside {{if}}`);
      list = top.node.otherwise;
    } else if (w[0] === 'end') {
      const top = stack.pop();
      if (top === undefined) throw new UsageError(`template ${JSON.stringify(template)}: {{end}} without {{range}} or {{if}}`);
      list = top.list;
    } else if (w.length > 0) {
      list.push({ kind: 'action', words: w });
    }
  }
  if (stack.length > 0) throw new UsageError(`template ${JSON.stringify(template)}: {{${stack[stack.length - 1]!.node.kind}}} without {{end}}`);
  return root;
}

const MISSING = Symbol('no value');

function field(value: unknown, path: string, template: string): unknown {
  let v: unknown = value;
  for (const name of path.split('.').filter((p) => p !== '')) {
    if (v === MISSING || v === null || v === undefined) return MISSING;
    if (typeof v !== 'object' || Array.isArray(v)) throw new UsageError(`template ${JSON.stringify(template)}: can't evaluate field ${name} in a ${Array.isArray(v) ? 'list' : typeof v}`);
    const o = v as Record<string, unknown>;
    if (Object.hasOwn(o, name)) {
      v = o[name];
      continue;
    }
    const key = Object.keys(o).find((k) => k.toLowerCase() === name.toLowerCase());
    v = key === undefined ? MISSING : o[key];
  }
  return v;
}

function argument(word: string, dot: unknown, template: string): unknown {
  if (word.startsWith('"')) return JSON.parse(word) as string;
  if (word === '.' || word.startsWith('.')) return field(dot, word, template);
  if (/^-?\d+$/.test(word)) return Number(word);
  throw new UsageError(`template ${JSON.stringify(template)}: unknown word ${JSON.stringify(word)} (fields start with ".")`);
}

const functions: Record<string, (args: unknown[]) => unknown> = {
  json: ([v]) => JSON.stringify(v === MISSING ? null : v),
  upper: ([v]) => goString(v).toUpperCase(),
  lower: ([v]) => goString(v).toLowerCase(),
  len: ([v]) => (Array.isArray(v) ? v.length : typeof v === 'string' ? v.length : v !== null && typeof v === 'object' ? Object.keys(v).length : 0),
  join: ([v, sep]) => (Array.isArray(v) ? v.map(goString).join(String(sep ?? ' ')) : goString(v)),
  index: ([v, key]) => {
    if (Array.isArray(v)) return v[Number(key)] ?? MISSING;
    if (v !== null && typeof v === 'object') return (v as Record<string, unknown>)[String(key)] ?? MISSING;
    return MISSING;
  },
};

function evaluate(w: string[], dot: unknown, template: string): unknown {
  const [head, ...rest] = w;
  const fn = functions[head!];
  if (fn !== undefined) return fn(rest.map((r) => argument(r, dot, template)));
  if (rest.length > 0) throw new UsageError(`template ${JSON.stringify(template)}: unknown function ${JSON.stringify(head)} (known: ${Object.keys(functions).join(', ')})`);
  return argument(head!, dot, template);
}

/** A value as Go's fmt prints it with %v. */
export function goString(v: unknown): string {
  if (v === MISSING || v === undefined) return '<no value>';
  if (v === null) return '<nil>';
  if (Array.isArray(v)) return `[${v.map(goString).join(' ')}]`;
  if (typeof v === 'object') {
    return `map[${Object.keys(v)
      .sort()
      .map((k) => `${k}:${goString((v as Record<string, unknown>)[k])}`)
      .join(' ')}]`;
  }
  return String(v);
}

function truthy(v: unknown): boolean {
  if (v === MISSING || v === null || v === undefined || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

function render(nodes: Node[], dot: unknown, template: string): string {
  let out = '';
  for (const n of nodes) {
    if (n.kind === 'text') out += n.text;
    else if (n.kind === 'action') out += goString(evaluate(n.words, dot, template));
    else if (n.kind === 'if') out += render(truthy(evaluate(n.words, dot, template)) ? n.then : n.otherwise, dot, template);
    else {
      const v = evaluate(n.words, dot, template);
      const items = Array.isArray(v) ? v : v !== null && typeof v === 'object' ? Object.values(v) : [];
      for (const item of items) out += render(n.body, item, template);
    }
  }
  return out;
}

/** Checks the template once and gives the function that renders it for one value. */
export function compileTemplate(template: string): (value: unknown) => string {
  const nodes = parse(template);
  return (value) => render(nodes, value, template);
}
