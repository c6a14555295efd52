// The listings' shape (ls, ps, images): left-aligned columns two spaces apart, a
// header in capitals, ids cut to podman's 12 hex digits unless --no-trunc, and
// times as podman prints them ("3 weeks ago").

/** Rows (the first is the header) as padded lines, trailing blanks cut. */
export function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd());
}

/** A 64-hex id as its 12-digit short form; any other id (a name a user chose) as it is. */
export function shortId(id: string, noTrunc = false): string {
  return !noTrunc && /^[0-9a-f]{64}$/.test(id) ? id.slice(0, 12) : id;
}

/** "5 minutes ago", as podman (go-units' HumanDuration) says it. */
export function formatAgo(iso: string | undefined, now = Date.now()): string {
  const t = iso === undefined ? NaN : Date.parse(iso);
  if (!Number.isFinite(t)) return 'unknown';
  const s = Math.max(0, (now - t) / 1000);
  const [minute, hour, day] = [60, 3600, 86400];
  let text: string;
  if (s < 1) text = 'Less than a second';
  else if (s < minute) text = `${Math.floor(s)} seconds`;
  else if (s < 2 * minute) text = 'About a minute';
  else if (s < hour) text = `${Math.floor(s / minute)} minutes`;
  else if (s < 2 * hour) text = 'About an hour';
  else if (s < 2 * day) text = `${Math.floor(s / hour)} hours`;
  else if (s < 14 * day) text = `${Math.floor(s / day)} days`;
  else if (s < 60 * day) text = `${Math.floor(s / (7 * day))} weeks`;
  else if (s < 730 * day) text = `${Math.floor(s / (30 * day))} months`;
  else text = `${Math.floor(s / (365 * day))} years`;
  return `${text} ago`;
}
