// SELinux mount labels, formatted exactly as the label library of containers/storage
// (opencontainers/selinux go-selinux/label.FormatMountLabel) does: `context="<label>"`
// appended to the other mount options, the label quoted like Go's %q.

/** `options` plus `context="label"` (or just the context when there are no options); `options` unchanged without a label. */
export function formatMountLabel(options: string, mountLabel: string | undefined): string {
  if (mountLabel === undefined || mountLabel === '') return options;
  const context = `context=${goQuote(mountLabel)}`;
  return options === '' ? context : `${options},${context}`;
}

const namedEscapes: Record<string, string> = {
  '\x07': '\\a',
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\v': '\\v',
  '"': '\\"',
  '\\': '\\\\',
};

/** strconv.Quote: printable characters as they are, the rest escaped. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    const named = namedEscapes[ch];
    if (named !== undefined) out += named;
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp >= 0xd800 && cp <= 0xdfff) out += '\ufffd'; // written to the kernel as U+FFFD, which Go prints as it is
    else if (!isPrintable(ch)) out += cp > 0xffff ? `\\U${cp.toString(16).padStart(8, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`;
    else out += ch;
  }
  return out + '"';
}

// Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space.
function isPrintable(ch: string): boolean {
  return ch === ' ' || /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u.test(ch);
}
