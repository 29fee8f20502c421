import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { rowsOf, tenantQuery } from '../db/tenant-scope';

/** An outgoing webhook claimed for delivery, with the tenant's alert secret as stored. */
export interface ClaimedWebhook {
  id: string;
  tenant_id: string;
  event_id: string;
  /** the tenant's alert URL now (not when the event was queued: a URL corrected since is the one sent to); null: removed since */
  url: string | null;
  body: string;
  attempts: number;
  /** seconds since the event was queued */
  age_s: number;
  sealed: string | null;
  legacy: string | null;
  /** the claim's token: only its holder records the outcome */
  token: string;
}

/** A webhook event's body, as every event the tenant's alert URL receives is shaped: `{id, type, data, createdAt}`. */
export function alertEvent(id: string, type: string, data: Record<string, unknown>): string {
  return JSON.stringify({ id, type, data, createdAt: new Date().toISOString() });
}

/**
 * Budget alerts and the outgoing webhooks that carry them: the only code that writes
 * `budget_alerts` and `outbound_webhooks`. An alert is recorded and its webhook queued in one
 * statement; a webhook is claimed under a lease and its outcome recorded only by the claim holder.
 */
@Injectable()
export class AlertsRepository {
  constructor(private readonly ds: DataSource) {}

  /**
   * Records that a threshold fired this period and queues its webhook to the tenant's alert URL (if
   * one is set), together; false when it had fired already (on any instance): nothing queued.
   */
  async fireThreshold(tenantId: string, a: { period: string; threshold: string; ratio: string; eventId: string; body: string }): Promise<'fired' | 'fired before' | 'not reached'> {
    // Only while the period's spend is at the threshold of its cap as it is now: a settlement that
    // read the cap before an admin raised it (and its alert re-armed) does not fire it again.
    const { fired, existed } = await this.fireOnceWith(
      tenantId,
      `INSERT INTO budget_alerts (tenant_id, period, kind, threshold, utilization)
       SELECT $1, $4, 'threshold', $5, $6 FROM budget_periods p
        WHERE p.tenant_id = $1 AND p.period = $4 AND p.spent_nanos >= $5::numeric * p.cap_nanos`,
      [a.period, a.threshold, a.ratio],
      a,
      `SELECT 1 FROM budget_alerts WHERE tenant_id = $1 AND period = $4 AND kind = 'threshold' AND threshold = $5`,
    );
    return fired ? 'fired' : existed ? 'fired before' : 'not reached';
  }

  /**
   * After the period's cap changed (in its transaction, the cap already written): forgets each
   * threshold this period's spend is now under, so that it fires again when reached under the new cap
   * (a school that raised its cap after the 80% alert hears of 80% of the new one), and, when the cap
   * changed, the refused-call alert (a refusal under the new cap is news).
   */
  async rearm(tx: EntityManager, tenantId: string, period: string, capChanged: boolean): Promise<void> {
    await tenantQuery(
      tx,
      tenantId,
      `DELETE FROM budget_alerts a USING budget_periods p
        WHERE a.tenant_id = $1 AND a.period = $2 AND p.tenant_id = $1 AND p.period = $2
          AND ((a.kind = 'threshold' AND p.spent_nanos < a.threshold * p.cap_nanos) OR (a.kind = 'call_refused' AND $3))`,
      [period, capChanged],
    );
  }

  /** The same for a refused call (`budget.call_refused`): once per tenant and period. */
  fireCallRefused(tenantId: string, a: { period: string; ratio: string; eventId: string; body: string }): Promise<boolean> {
    return this.fireOnce(
      tenantId,
      `INSERT INTO budget_alerts (tenant_id, period, kind, threshold, utilization) VALUES ($1, $4, 'call_refused', 1, $5)`,
      [a.period, a.ratio],
      a,
    );
  }

  /** The same for a shadow-agreement alert: once per tenant, month and rubric. */
  fireShadowAlert(tenantId: string, a: { period: string; rubric: string; qwk: number; n: number; threshold: number; eventId: string; body: string }): Promise<boolean> {
    return this.fireOnce(
      tenantId,
      `INSERT INTO quality_alerts (tenant_id, period, rubric, qwk, n, threshold) VALUES ($1, $4, $5, $6, $7, $8)`,
      [a.period, a.rubric, a.qwk, a.n, a.threshold],
      a,
    );
  }

  /**
   * One statement: the alert's record (an INSERT into a table whose key says "once", its own
   * parameters from $4) and, only when that inserted a row, its webhook; whether it fired now.
   */
  private async fireOnce(tenantId: string, record: string, params: unknown[], w: { eventId: string; body: string }): Promise<boolean> {
    return (await this.fireOnceWith(tenantId, record, params, w)).fired;
  }

  /** fireOnce, and whether the record was there before (`existing`: a SELECT of it, same parameters). */
  private async fireOnceWith(tenantId: string, record: string, params: unknown[], w: { eventId: string; body: string }, existing = 'SELECT 1 WHERE false'): Promise<{ fired: boolean; existed: boolean }> {
    const [r] = await tenantQuery<{ fired: number; existed: boolean }>(
      this.ds.manager,
      tenantId,
      `WITH fired AS (${record} ON CONFLICT DO NOTHING RETURNING tenant_id),
       queued AS (
         INSERT INTO outbound_webhooks (tenant_id, id, event_id, url, body, status)
         SELECT $1, $2, $3, alert_webhook_url, $${params.length + 4}, 'pending' FROM tenants
          WHERE id = $1 AND alert_webhook_url IS NOT NULL AND EXISTS (SELECT 1 FROM fired)
         RETURNING id)
       SELECT (SELECT count(*) FROM fired)::int AS fired, EXISTS (${existing}) AS existed`,
      [randomUUID(), w.eventId, ...params, w.body],
    );
    return { fired: !!r?.fired, existed: r?.existed === true };
  }

  /** Queues a webhook to the tenant's alert URL, if one is set. */
  async queue(tenantId: string, eventId: string, body: string, m: EntityManager = this.ds.manager): Promise<void> {
    await tenantQuery(
      m,
      tenantId,
      `INSERT INTO outbound_webhooks (tenant_id, id, event_id, url, body, status)
       SELECT $1, $2, $3, alert_webhook_url, $4, 'pending' FROM tenants WHERE id = $1 AND alert_webhook_url IS NOT NULL`,
      [randomUUID(), eventId, body],
    );
  }

  /**
   * Due webhooks, at most one per tenant and none of a tenant that has a delivery in flight
   * anywhere, oldest first; each moved under this claim's lease (`leaseS`) in the same statement.
   */
  async claimDue(limit: number, leaseS: number): Promise<ClaimedWebhook[]> {
    if (limit <= 0) return [];
    const token = randomUUID();
    // Maintenance across tenants: each row carries its tenant and is signed with that tenant's secret.
    const rows = rowsOf<Omit<ClaimedWebhook, 'token'>>(
      await this.ds.query(
        `WITH candidates AS (
           SELECT id FROM (
             SELECT o.id, o.next_attempt_at, row_number() OVER (PARTITION BY o.tenant_id ORDER BY o.next_attempt_at, o.id) AS rn
               FROM outbound_webhooks o
              WHERE o.status = 'pending' AND o.next_attempt_at <= now()
                AND NOT EXISTS (SELECT 1 FROM outbound_webhooks b
                                 WHERE b.tenant_id = o.tenant_id AND b.status = 'pending'
                                   AND b.claim_token IS NOT NULL AND b.next_attempt_at > now())) c
            WHERE rn = 1 ORDER BY next_attempt_at LIMIT $1),
         claimed AS (
           SELECT w.id FROM outbound_webhooks w
            WHERE w.id IN (SELECT id FROM candidates) AND w.status = 'pending' AND w.next_attempt_at <= now()
              FOR UPDATE SKIP LOCKED)
         UPDATE outbound_webhooks w
            SET attempts = w.attempts + 1, claim_token = $2, next_attempt_at = now() + make_interval(secs => $3)
           FROM claimed, tenants t
          WHERE w.id = claimed.id AND t.id = w.tenant_id
        RETURNING w.id, w.tenant_id, w.event_id, t.alert_webhook_url AS url, w.body, w.attempts,
                  extract(epoch FROM now() - w.created_at)::float8 AS age_s,
                  t.alert_webhook_secret_enc AS sealed, t.alert_webhook_secret AS legacy`,
        [limit, token, leaseS],
      ),
    );
    return rows.map((r) => ({ ...r, token }));
  }

  async delivered(w: ClaimedWebhook): Promise<void> {
    await this.ds.query(
      `UPDATE outbound_webhooks SET status = 'delivered', delivered_at = now(), last_error = NULL, claim_token = NULL
        WHERE id = $1 AND claim_token = $2`,
      [w.id, w.token],
    );
  }

  /** A failed attempt: tried again after `retryInS`, or given up. */
  async failed(w: ClaimedWebhook, error: string, giveUp: boolean, retryInS: number): Promise<void> {
    await this.ds.query(
      `UPDATE outbound_webhooks SET status = $3, last_error = $4, claim_token = NULL,
              next_attempt_at = now() + make_interval(secs => $5)
        WHERE id = $1 AND claim_token = $2`,
      [w.id, w.token, giveUp ? 'failed' : 'pending', error.slice(0, 300), retryInS],
    );
  }
}
