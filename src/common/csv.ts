/**
 * CSV that Excel opens as it should: UTF-8 with a byte-order mark (so Chinese text is not read as
 * a legacy code page), CRLF line ends, fields quoted when they hold a comma, quote or line break.
 * A text cell that starts like a formula (= + - @, tab, carriage return) gets a leading apostrophe,
 * so a student's "=HYPERLINK(…)" stays text (OWASP's CSV injection advice). Numbers are written
 * as they are.
 */
export const CSV_BOM = '\uFEFF';

export function csvCell(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
  let s = value;
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) || /^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvTable(header: string[], rows: Array<Array<string | number | null | undefined>>): string {
  return CSV_BOM + [header, ...rows].map((r) => r.map(csvCell).join(',')).join('\r\n') + '\r\n';
}
