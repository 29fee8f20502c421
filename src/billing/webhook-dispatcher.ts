import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { loggableError } from '../common/error-rendering';
import { DEFAULT_MAX_RESPONSE_BYTES, DestinationRefusedError, HostResolver, OutboundPolicy, postWebhook } from '../common/outbound-webhook';
import { signPayload, SIGNATURE_HEADER } from '../common/signature';
import { AppConfig, CONFIG } from '../config/app-config';
import { rowsOf } from '../db/tenant-scope';
import { TenantSecretsService } from './tenant-secrets.service';

const MAX_ATTEMPTS = 8;
const BASE_DELAY_S = 2;
const POLL_MS = 1_000;
/** The id of the event a delivery carries, the same on every attempt: receivers dedupe on it. */
export const EVENT_ID_HEADER = 'x-inkstone-event-id';

interface ClaimedWebhook {
  id: string;
  tenant_id: string;
  event_id: string;
  url: string;
  body: string;
  attempts: number;
  sealed: string | null;
  legacy: string | null;
}

/**
 * Delivers queued outgoing webhooks (budget alerts) to tenants' URLs, signed with the tenant's
 * alert secret, through postWebhook (public https addresses only, vetted after DNS and pinned, no
 * redirects, capped answers, one deadline per delivery).
 *
 * A row is claimed under a lease (its next_attempt_at moves past the delivery deadline, and a
 * claim token marks the holder) with SKIP LOCKED, so instances running at once never claim the
 * same row, and only the holder records the outcome. Each tenant has at most one delivery in
 * flight, and deliveries run concurrently (WEBHOOK_CONCURRENCY per instance): the background loop
 * fills free slots every second without waiting for the slow ones, so a URL that never answers
 * holds one slot until its deadline and delays no other tenant. A failure is retried with
 * exponential backoff (2 s, 4 s, … up to 8 attempts); a refused destination is not retried. A
 * process that dies after sending but before recording sends again once the lease runs out, with
 * the same X-Inkstone-Event-Id.
 */
@Injectable()
export class WebhookDispatcher implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(WebhookDispatcher.name);
  private readonly policy: OutboundPolicy;
  private readonly concurrency: number;
  private readonly leaseS: number;
  private readonly inFlight = new Set<Promise<boolean>>();
  private timer?: NodeJS.Timeout;
  private claiming = false;

  constructor(
    private readonly ds: DataSource,
    @Inject(CONFIG) config: AppConfig,
    private readonly resolver: HostResolver,
    private readonly secrets: TenantSecretsService,
  ) {
    const { allowPrivate, timeoutMs, concurrency } = config.webhooks;
    this.policy = { allowPrivate, timeoutMs, maxResponseBytes: DEFAULT_MAX_RESPONSE_BYTES };
    this.concurrency = concurrency;
    this.leaseS = Math.ceil((timeoutMs * 2) / 1000) + 30;
  }

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => void this.fillSlots(), POLL_MS);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.allSettled([...this.inFlight]);
  }

  /** The background loop: starts as many due deliveries as there are free slots, and does not wait for them. */
  private async fillSlots(): Promise<void> {
    const free = this.concurrency - this.inFlight.size;
    if (this.claiming || free <= 0) return;
    this.claiming = true;
    try {
      for (const w of await this.claim(free)) void this.start(w);
    } catch (err) {
      this.logger.warn({ msg: 'could not claim webhooks', err: loggableError(err) });
    } finally {
      this.claiming = false;
    }
  }

  /**
   * Claims what is due now (at most `limit`, and at most WEBHOOK_CONCURRENCY), delivers it
   * concurrently and returns how many were delivered. For tests and tools; the background loop
   * does not wait like this.
   */
  async deliverDue(limit = this.concurrency): Promise<number> {
    const claimed = await this.claim(Math.min(limit, this.concurrency));
    const outcomes = await Promise.all(claimed.map((w) => this.start(w)));
    return outcomes.filter(Boolean).length;
  }

  private start(w: ClaimedWebhook & { token: string }): Promise<boolean> {
    const p = this.deliver(w).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
    return p;
  }

  /**
   * Due rows, at most one per tenant and none of a tenant that has a delivery in flight anywhere,
   * oldest first; each moved under this claim's lease in the same statement.
   */
  private async claim(limit: number): Promise<Array<ClaimedWebhook & { token: string }>> {
    if (limit <= 0) return [];
    const token = randomUUID();
    // Maintenance across tenants: each row carries its tenant and is signed with that tenant's secret.
    const rows = rowsOf<ClaimedWebhook>(
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
        RETURNING w.id, w.tenant_id, w.event_id, w.url, w.body, w.attempts,
                  t.alert_webhook_secret_enc AS sealed, t.alert_webhook_secret AS legacy`,
        [limit, token, this.leaseS],
      ),
    );
    return rows.map((r) => ({ ...r, token }));
  }

  private async deliver(w: ClaimedWebhook & { token: string }): Promise<boolean> {
    let error: string | null = null;
    let failure: unknown = null;
    let refused = false;
    try {
      const secret = await this.secrets.open('alert', w.tenant_id, w.sealed, w.legacy);
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'user-agent': 'Inkstone-Webhooks/1',
        [EVENT_ID_HEADER]: w.event_id,
        ...(secret ? { [SIGNATURE_HEADER]: signPayload(secret, w.body) } : {}),
      };
      await postWebhook({ url: w.url, headers, body: w.body }, this.policy, this.resolver);
    } catch (err) {
      refused = err instanceof DestinationRefusedError;
      failure = err;
      error = (err as Error).message || String(err);
    }
    try {
      if (!error) {
        await this.ds.query(
          `UPDATE outbound_webhooks SET status = 'delivered', delivered_at = now(), last_error = NULL, claim_token = NULL
            WHERE id = $1 AND claim_token = $2`,
          [w.id, w.token],
        );
        return true;
      }
      const giveUp = refused || w.attempts >= MAX_ATTEMPTS;
      await this.ds.query(
        `UPDATE outbound_webhooks SET status = $3, last_error = $4, claim_token = NULL,
                next_attempt_at = now() + make_interval(secs => $5)
          WHERE id = $1 AND claim_token = $2`,
        [w.id, w.token, giveUp ? 'failed' : 'pending', error.slice(0, 300), BASE_DELAY_S * 2 ** (w.attempts - 1)],
      );
      this.logger.warn({
        msg: refused ? 'webhook destination refused' : giveUp ? 'webhook abandoned' : 'webhook delivery failed, will retry',
        tenantId: w.tenant_id,
        webhookId: w.id,
        eventId: w.event_id,
        attempt: w.attempts,
        err: loggableError(failure),
      });
    } catch (err) {
      // The lease runs out and the row is tried again.
      this.logger.warn({ msg: 'could not record a webhook delivery', tenantId: w.tenant_id, webhookId: w.id, err: loggableError(err) });
    }
    return false;
  }
}
