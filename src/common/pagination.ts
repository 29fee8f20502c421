import { ApiError, FieldProblem } from './errors';
import { UUID } from './ids';

/**
 * Keyset cursors: the position after the last row of a page, as (timestamp as PostgreSQL printed
 * it, id), JSON in base64url. A cursor comes back from the client, so it is read as untrusted
 * input: anything but the exact shape the server writes is a 400, never a query that PostgreSQL
 * refuses (a 500) and never a page from somewhere else.
 */
export interface KeysetPosition {
  /**
   * The row's timestamp as PostgreSQL prints it, in UTC to the microsecond (a JS Date would round
   * it to milliseconds): `2026-12-01 08:00:00.123456+00`.
   */
  at: string;
  id: string;
}

/** A cursor the server writes is under 100 characters; anything much longer is not one of them. */
export const MAX_CURSOR_LENGTH = 256;

const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** timestamptz as PostgreSQL prints it (DateStyle ISO): `2026-12-01 08:00:00.123456+00`, `…+05:30`. */
const PG_TIMESTAMPTZ = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?[+-](\d{2})(?::(\d{2}))?(?::(\d{2}))?$/;

export function encodeCursor(p: KeysetPosition): string {
  return Buffer.from(JSON.stringify([p.at, p.id]), 'utf8').toString('base64url');
}

/** The position a cursor names, or a 400 naming the `field` when it is not one the server made. */
export function decodeCursor(text: unknown, field = 'cursor'): KeysetPosition {
  const refuse = (why: string) =>
    ApiError.validation([{ field, message: `${field} is not one this API gave out (${why}); pass nextCursor from the previous page unchanged` }]);
  if (typeof text !== 'string') throw refuse('give it once');
  if (text.length === 0 || text.length > MAX_CURSOR_LENGTH) throw refuse(`it must be 1-${MAX_CURSOR_LENGTH} characters`);
  if (!BASE64URL.test(text)) throw refuse('it is not base64url');
  const bytes = Buffer.from(text, 'base64url');
  // Node's decoder skips what it cannot read; a cursor the server made encodes back to itself.
  if (bytes.toString('base64url') !== text) throw refuse('it is not base64url');
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw refuse('it is not JSON');
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || typeof parsed[0] !== 'string' || typeof parsed[1] !== 'string') {
    throw refuse('it is not a position');
  }
  const [at, id] = parsed as [string, string];
  if (!UUID.test(id)) throw refuse('its id is not a UUID');
  if (!isPgTimestamptz(at)) throw refuse('its time is not a valid timestamp');
  return { at, id };
}

/** True when `text` is a real instant in the shape PostgreSQL prints (so it casts without error). */
export function isPgTimestamptz(text: string): boolean {
  const m = PG_TIMESTAMPTZ.exec(text);
  if (!m) return false;
  const [year, month, day, hour, minute, second, offH, offM = 0, offS = 0] = m.slice(1).map((v) => (v === undefined ? undefined : Number(v))) as number[];
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return false;
  if (hour > 23 || minute > 59 || second > 59) return false;
  return offH <= 15 && offM <= 59 && offS <= 59;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * A page's size from the query (`limit`): decimal digits for an integer from 1 to `max`, `byDefault`
 * when absent.
 * Anything else is a 400 naming `limit`, or, given `problems`, added to the route's other problems
 * (one 400 tells them all).
 */
export function pageLimit(raw: unknown, max: number, byDefault = max, problems?: FieldProblem[]): number {
  // Decimal digits only: Number() would also take `0x5`, `1e1`, `2.0` and ` 7 `.
  const limit = raw === undefined ? byDefault : typeof raw === 'string' && /^0*[0-9]{1,9}$/.test(raw) ? Number(raw) : NaN;
  if (Number.isInteger(limit) && limit >= 1 && limit <= max) return limit;
  const problem = { field: 'limit', message: `limit must be an integer from 1 to ${max}` };
  if (!problems) throw ApiError.validation([problem]);
  problems.push(problem);
  return byDefault;
}

/**
 * SQL for a row's keyset timestamp as the cursor keeps it: UTC to the microsecond (a JS Date would
 * round it to milliseconds and the next page would repeat or skip rows).
 */
export const cursorAtSql = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'`;

/**
 * A page of rows read with `limit + 1` (newest first) and the cursor of the next page, null on the
 * last one. Each row carries `cursor_at` (cursorAtSql) and `id`.
 */
export function keysetPage<R extends { cursor_at?: unknown; id?: unknown }>(rows: R[], limit: number): { rows: R[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { rows: page, nextCursor: rows.length > limit && last ? encodeCursor({ at: String(last.cursor_at), id: String(last.id) }) : null };
}
