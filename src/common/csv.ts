import { clip } from './control-chars';

/**
 * CSV that Excel opens as it should: UTF-8 with a byte-order mark (so Chinese text is not read as
 * a legacy code page), CRLF line ends, fields quoted when they hold a comma, quote or line break.
 * A text cell that starts like a formula (= + - @, tab, carriage return) gets a leading apostrophe,
 * so a student's "=HYPERLINK(…)" stays text (OWASP's CSV injection advice), and so does one after
 * leading spaces; a plain decimal such as
 * "-2.445" is not a formula and is left a number. Numbers are written as they are.
 */
export const CSV_BOM = '\uFEFF';

export function csvCell(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
  let s = value;
  // (A plain decimal, a negative margin say, is a number to Excel, not a formula: kept as it is.)
  // (Also after leading spaces of any kind — a no-break or ideographic one too: a sheet program set to
  // trim them on import reads " =…" as a formula.)
  if ((/^[=+\-@\t\r]/.test(s) || /^\s+[=+\-@]/.test(s)) && !/^-?\d+(\.\d+)?$/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) || /^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

type CsvLine = Array<string | number | null | undefined>;

export function csvTable(header: string[], rows: CsvLine[]): string {
  return csvHeader(header) + csvRows(rows);
}

/** A sheet's start (the byte-order mark and the header line), for a sheet sent in parts: csvTable is csvHeader, then csvRows of each part. */
export function csvHeader(header: string[]): string {
  return CSV_BOM + csvRows([header]);
}

/** Lines of a sheet, each ended by CRLF. */
export function csvRows(rows: CsvLine[]): string {
  let out = '';
  for (const r of rows) out += r.map(csvCell).join(',') + '\r\n';
  return out;
}

/**
 * A Content-Disposition for a download named after something a person wrote (an assignment's
 * title): an ASCII `filename` for old clients and the UTF-8 one (RFC 6266/5987) for the rest, with
 * the characters no file system takes, and control characters, left out.
 */
export function attachment(name: string, fallback: string): string {
  const safe = clip(name.replace(/[\\/:*?"<>|\p{Cc}\p{Cf}]+/gu, ' ').replace(/\s+/g, ' ').trim(), 80).trim() || fallback;
  const ascii = /^[\x20-\x7e]+$/.test(safe) ? safe : fallback;
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(safe)}`;
}
