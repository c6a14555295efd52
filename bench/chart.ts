// An SVG bar chart of benchmark comparisons, dependency-free, so bench/README.md can
// show at a glance how ogd compares with its peers. Each comparison gets its own row
// of bars scaled to its own slowest contender (cases differ by orders of magnitude),
// with the median printed on each bar and ogd's bars in a colour of their own.

export interface ChartBar {
  label: string;
  value: number;
  /** Drawn in the accent colour (ogd's own contenders). */
  ours: boolean;
}

export interface ChartGroup {
  title: string;
  unit: string;
  bars: ChartBar[];
}

const WIDTH = 760;
const LABEL_WIDTH = 230;
const BAR_HEIGHT = 18;
const BAR_GAP = 6;
const GROUP_TITLE = 22;
const GROUP_GAP = 14;
const MARGIN = 16;

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const LARGER_UNIT: Record<string, string> = { 'µs': 'ms', ms: 's' };

/** "420 ms", "1.30 s", "85.2 µs": three significant digits, moving up a unit past 1000. */
export function formatValue(value: number, unit: string): string {
  const larger = LARGER_UNIT[unit];
  if (larger !== undefined && value >= 1000) return formatValue(value / 1000, larger);
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${unit}`;
}

export function renderChart(title: string, subtitle: string, groups: ChartGroup[]): string {
  const barArea = WIDTH - LABEL_WIDTH - 2 * MARGIN - 90;
  const parts: string[] = [];
  let y = MARGIN + 20;
  parts.push(`<text x="${MARGIN}" y="${y}" class="title">${escape(title)}</text>`);
  y += 18;
  parts.push(`<text x="${MARGIN}" y="${y}" class="sub">${escape(subtitle)}</text>`);
  y += 14;
  for (const group of groups) {
    y += GROUP_GAP;
    parts.push(`<text x="${MARGIN}" y="${y + 14}" class="group">${escape(group.title)}</text>`);
    y += GROUP_TITLE;
    const max = Math.max(...group.bars.map((b) => b.value), Number.MIN_VALUE);
    for (const bar of group.bars) {
      const w = Math.max(1, Math.round((bar.value / max) * barArea));
      const x = MARGIN + LABEL_WIDTH;
      parts.push(`<text x="${x - 8}" y="${y + 13}" class="label" text-anchor="end">${escape(bar.label)}</text>`);
      parts.push(`<rect x="${x}" y="${y}" width="${w}" height="${BAR_HEIGHT}" rx="2" class="${bar.ours ? 'ours' : 'peer'}"/>`);
      parts.push(`<text x="${x + w + 6}" y="${y + 13}" class="value">${escape(formatValue(bar.value, group.unit))}</text>`);
      y += BAR_HEIGHT + BAR_GAP;
    }
  }
  y += MARGIN;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${y}" viewBox="0 0 ${WIDTH} ${y}" font-family="system-ui, -apple-system, Segoe UI, sans-serif">`,
    '<style>',
    '  .title { font-size: 17px; font-weight: 600; fill: #1f2328 }',
    '  .sub { font-size: 12px; fill: #59636e }',
    '  .group { font-size: 13px; font-weight: 600; fill: #1f2328 }',
    '  .label, .value { font-size: 12px; fill: #1f2328 }',
    '  .ours { fill: #1f6feb } .peer { fill: #afb8c1 }',
    '</style>',
    `<rect width="${WIDTH}" height="${y}" fill="#ffffff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
