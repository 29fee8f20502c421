import { ApiError } from '../common/errors';
import { UUID } from '../common/ids';
import type { EssayErasure } from './essay-erasure.service';

/** An erasure as the service logged it (`msg: "essay erased"`): which essay, whose, who asked, when. */
export interface LoggedErasure {
  tenantId: string;
  essayId: string;
  /** the key that asked (null: the retention sweep, or a line without one) */
  keyId: string | null;
  at: Date;
}

export interface ErasuresInLog {
  erasures: LoggedErasure[];
  /** lines read, and those that were not a JSON object (other programs' output, a cut line) */
  lines: number;
  unreadable: number;
}

/** A log line's time: pino's epoch milliseconds, or an ISO string. */
function timeOf(v: unknown): Date | null {
  const d = typeof v === 'number' ? new Date(v) : typeof v === 'string' ? new Date(v) : null;
  return d && !Number.isNaN(d.getTime()) ? d : null;
}

/**
 * The essays erased in a service log (its JSON lines, as `npm start` writes them), at or after
 * `since` when given: each essay once, at its first erasure, oldest first. Lines that are not
 * erasures are passed over; the log may hold any number of them (read line by line).
 */
/**
 * A log line as the service wrote it: the JSON object itself, or the one a collector kept as a
 * string in `log` (Docker's json-file driver: `{"log":"{…}\n","stream":"stdout","time":…}`) or
 * in `message`; null when it is neither.
 */
function serviceLine(line: string): Record<string, unknown> | null {
  const parse = (text: string): Record<string, unknown> | null => {
    try {
      const o: unknown = JSON.parse(text);
      return o && typeof o === 'object' && !Array.isArray(o) ? (o as Record<string, unknown>) : null;
    } catch {
      return null;
    }
  };
  const o = parse(line);
  if (!o || 'msg' in o) return o;
  const inner = typeof o.log === 'string' ? o.log : typeof o.message === 'string' ? o.message : null;
  return inner === null ? o : parse(inner);
}

export async function erasuresInLog(lines: AsyncIterable<string> | Iterable<string>, since?: Date): Promise<ErasuresInLog> {
  const seen = new Map<string, LoggedErasure>();
  let count = 0;
  let unreadable = 0;
  for await (const line of lines) {
    count++;
    if (!line.includes('essay erased')) continue; // most lines: no parse
    const o = serviceLine(line);
    // A line naming the phrase that is no service line (cut, written for people, or wrapped or
    // reshaped by a log collector in a way not read here: no `msg`) is counted, never skipped — its
    // essay would otherwise stay restored without a word. A service line with another message is
    // skipped: other lines can carry the phrase in what a school sent (an event's type, an error).
    if (!o || typeof o.msg !== 'string') {
      unreadable++;
      continue;
    }
    if (o.msg !== 'essay erased') continue;
    const { tenantId, essayId, keyId } = o;
    const at = timeOf(o.time);
    if (typeof tenantId !== 'string' || typeof essayId !== 'string' || !UUID.test(tenantId) || !UUID.test(essayId) || !at) {
      unreadable++;
      continue;
    }
    if (since && at < since) continue;
    const key = `${tenantId.toLowerCase()}:${essayId.toLowerCase()}`;
    const earlier = seen.get(key);
    if (!earlier || at < earlier.at) {
      seen.set(key, { tenantId: tenantId.toLowerCase(), essayId: essayId.toLowerCase(), keyId: typeof keyId === 'string' && UUID.test(keyId) ? keyId : null, at });
    }
  }
  return { erasures: [...seen.values()].sort((a, b) => a.at.getTime() - b.at.getTime()), lines: count, unreadable };
}

export interface ReplayResult {
  /** erasures read from the log */
  found: number;
  /** essays that were back (a restore from before their erasure) and are erased again now */
  erasedAgain: string[];
  /** essays already erased in this database */
  alreadyErased: number;
  /** essays this database never had (made after the backup was taken): nothing to erase */
  notFound: number;
  /** essays being graded now (409): run the replay again once their grading ends */
  busy: string[];
}

/**
 * Erases again, in this database, every essay a log says was erased: after a restore from a backup
 * taken before those erasures, the essays came back with it. Each is erased as it was the first
 * time (EssayErasure: text, grades, overrides, signatures, cached answers, open jobs and orders),
 * logged with `why: "reapplied"`; one already erased is left as it is.
 */
export async function reapplyErasures(erasure: Pick<EssayErasure, 'eraseFor'>, erasures: LoggedErasure[]): Promise<ReplayResult> {
  const result: ReplayResult = { found: erasures.length, erasedAgain: [], alreadyErased: 0, notFound: 0, busy: [] };
  for (const e of erasures) {
    try {
      const done = await erasure.eraseFor(e.tenantId, e.essayId, e.keyId, 'reapplied');
      if (done.again) result.alreadyErased++;
      else result.erasedAgain.push(e.essayId);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'NOT_FOUND') result.notFound++;
      else if (err instanceof ApiError && err.code === 'CONFLICT') result.busy.push(e.essayId);
      else throw err;
    }
  }
  return result;
}
