import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { tenantQuery } from '../db/tenant-scope';

/** What a key says of a request: new (go on), answered before (replay it), or not this request. */
export type IdempotencyClaim =
  | { kind: 'new' }
  | { kind: 'replay'; status: number; body: unknown }
  | { kind: 'mismatch' }
  | { kind: 'in_progress' };

/** How long an answer is kept for its key. */
export const IDEMPOTENCY_TTL_HOURS = 24;
/** A request whose key was claimed this long ago and never answered (its process died) may be retried. */
export const IDEMPOTENCY_ABANDONED_S = 120;
/** Expired keys of the tenant removed with each claim, at most. */
const SWEEP = 100;

/**
 * The idempotency_keys table: a tenant's `Idempotency-Key`s, each with its request's hash and,
 * once answered, the answer (IdempotencyInterceptor).
 */
@Injectable()
export class IdempotencyRepository {
  /** IDEMPOTENCY_ABANDONED_S (shorter in tests) */
  abandonedS = IDEMPOTENCY_ABANDONED_S;

  constructor(private readonly ds: DataSource) {}

  async claim(tenantId: string, key: string, hash: string, again = 0): Promise<IdempotencyClaim> {
    // A key past its time is new again: this one goes if it is, and the tenant's other expired keys
    // a few at a time, as keys are used (behind more than that many, an old key replayed its answer).
    await tenantQuery(
      this.ds.manager,
      tenantId,
      // (Both found by the key: this one by its own, the others a hundred at most. Written as
      // "key = $4 OR key IN (…)", the planner read every expired key of the school each time.)
      `DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key IN (
         (SELECT key FROM idempotency_keys WHERE tenant_id = $1 AND key = $4 AND created_at < now() - make_interval(hours => $2))
         UNION ALL
         (SELECT key FROM idempotency_keys WHERE tenant_id = $1 AND created_at < now() - make_interval(hours => $2) LIMIT $3))`,
      [IDEMPOTENCY_TTL_HOURS, SWEEP, key],
    );
    const taken = await tenantQuery(
      this.ds.manager,
      tenantId,
      `INSERT INTO idempotency_keys (tenant_id, key, request_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING key`,
      [key, hash],
    );
    if (taken.length) return { kind: 'new' };
    const [row] = await tenantQuery<{ request_hash: string; status_code: number | null; response: unknown; abandoned: boolean }>(
      this.ds.manager,
      tenantId,
      `SELECT request_hash, status_code, response, created_at < now() - make_interval(secs => $3) AS abandoned
         FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`,
      [key, this.abandonedS],
    );
    // Removed meanwhile (its request failed and released it): claim it again, or say it is busy.
    if (!row) return again < 2 ? this.claim(tenantId, key, hash, again + 1) : { kind: 'in_progress' };
    if (row.request_hash !== hash) return { kind: 'mismatch' };
    if (row.status_code !== null) return { kind: 'replay', status: row.status_code, body: row.response };
    if (!row.abandoned) return { kind: 'in_progress' };
    // Claimed and never answered: its request died. The retry takes the key over (once: the first to get here).
    const retaken = await tenantQuery(
      this.ds.manager,
      tenantId,
      `UPDATE idempotency_keys SET created_at = now() WHERE tenant_id = $1 AND key = $2 AND status_code IS NULL
          AND created_at < now() - make_interval(secs => $3) RETURNING key`,
      [key, this.abandonedS],
    );
    return retaken.length ? { kind: 'new' } : { kind: 'in_progress' };
  }

  /** The request holding the key is still being answered (IdempotencyInterceptor, while it runs): not abandoned. */
  async stillAnswering(tenantId: string, key: string): Promise<void> {
    await tenantQuery(this.ds.manager, tenantId, `UPDATE idempotency_keys SET created_at = now() WHERE tenant_id = $1 AND key = $2 AND status_code IS NULL`, [key]);
  }

  /** The request's answer, kept for its key. */
  async answer(tenantId: string, key: string, status: number, body: unknown): Promise<void> {
    await tenantQuery(this.ds.manager, tenantId, `UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE tenant_id = $1 AND key = $2`, [
      key,
      status,
      JSON.stringify(body ?? null),
    ]);
  }

  /** The request failed: its key is free again, for a retry to do what it could not. */
  async release(tenantId: string, key: string): Promise<void> {
    await tenantQuery(this.ds.manager, tenantId, `DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND status_code IS NULL`, [key]);
  }
}
