// Layer entry names in messages. The names themselves are cleaned and resolved by
// the native apply (native/apply_tar.cc); they reach JS as raw bytes, one char per
// byte (latin1), and are only shown from here.

/** Names in messages are cut here: no real path is longer (PATH_MAX), a hostile one may be megabytes. */
const DISPLAY_MAX = 4096;

/** A name for messages: the bytes as UTF-8 where they are, replacement chars where not; cut when absurdly long. */
export function displayName(name: string): string {
  const text = Buffer.from(name.length > DISPLAY_MAX ? name.slice(0, DISPLAY_MAX) : name, 'latin1').toString('utf8');
  return name.length > DISPLAY_MAX ? `${text}… (${name.length} bytes)` : text;
}
