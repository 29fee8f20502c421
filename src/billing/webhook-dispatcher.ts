import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { signPayload, SIGNATURE_HEADER } from '../common/signature';
import { rowsOf } from '../db/tenant-scope';

const MAX_ATTEMPTS = 8;
const BASE_DELAY_S = 2;

/**
 * Delivers queued outgoing webhooks (budget alerts) to tenants' URLs, signed with the tenant's
 * alert secret. A failure is retried with exponential backoff (2 s, 4 s, … up to 8 attempts);
 * rows are claimed with SKIP LOCKED, so several instances share the work without sending twice.
 */
@Injectable()
export class WebhookDispatcher implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(WebhookDispatcher.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<number>;

  constructor(private readonly ds: DataSource) {}

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => {
      this.running ??= this.deliverDue().finally(() => (this.running = undefined));
    }, 1_000);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** Sends what is due now; returns how many were delivered. */
  async deliverDue(limit = 20): Promise<number> {
    // Maintenance across tenants: each row carries its tenant and is signed with that tenant's secret.
    const due = rowsOf<{ id: string; tenant_id: string; url: string; body: string; attempts: number; secret: string | null }>(
      await this.ds.query(
        `UPDATE outbound_webhooks w SET attempts = attempts + 1, next_attempt_at = now() + interval '60 seconds'
          WHERE id IN (SELECT id FROM outbound_webhooks WHERE status = 'pending' AND next_attempt_at <= now()
                        ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
          RETURNING w.id, w.tenant_id, w.url, w.body, w.attempts,
                    (SELECT alert_webhook_secret FROM tenants t WHERE t.id = w.tenant_id) AS secret`,
        [limit],
      ),
    );
    let delivered = 0;
    for (const w of due) {
      let error: string | null = null;
      try {
        const res = await fetch(w.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(w.secret ? { [SIGNATURE_HEADER]: signPayload(w.secret, w.body) } : {}) },
          body: w.body,
          signal: AbortSignal.timeout(10_000),
        });
        if (!res.ok) error = `HTTP ${res.status}`;
      } catch (err) {
        error = (err as Error).message;
      }
      if (!error) {
        delivered++;
        await this.ds.query(`UPDATE outbound_webhooks SET status = 'delivered', delivered_at = now(), last_error = NULL WHERE id = $1`, [w.id]);
        continue;
      }
      const giveUp = w.attempts >= MAX_ATTEMPTS;
      await this.ds.query(
        `UPDATE outbound_webhooks SET status = $2, last_error = $3,
                next_attempt_at = now() + make_interval(secs => $4) WHERE id = $1`,
        [w.id, giveUp ? 'failed' : 'pending', error.slice(0, 300), BASE_DELAY_S * 2 ** (w.attempts - 1)],
      );
      this.logger.warn({ msg: giveUp ? 'webhook abandoned' : 'webhook delivery failed, will retry', tenantId: w.tenant_id, webhookId: w.id, attempt: w.attempts, err: error });
    }
    return delivered;
  }
}
