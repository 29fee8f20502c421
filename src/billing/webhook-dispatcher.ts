import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { loggableError } from '../common/error-rendering';
import { DEFAULT_MAX_RESPONSE_BYTES, DestinationRefusedError, HostResolver, OutboundPolicy, postWebhook } from '../common/outbound-webhook';
import { signPayload, SIGNATURE_HEADER } from '../common/signature';
import { AppConfig, CONFIG } from '../config/app-config';
import { AlertsRepository, ClaimedWebhook } from './alerts.repository';
import { TenantSecretsService } from './tenant-secrets.service';

const BASE_DELAY_S = 2;
/** Retries back off from BASE_DELAY_S, doubling, to at most this far apart. */
const MAX_DELAY_S = 3_600;
/** An event not delivered this long after it was queued is given up (a refund notice outlives a receiver down over a weekend). */
export const WEBHOOK_GIVE_UP_S = 72 * 3_600;
const POLL_MS = 1_000;
/** The id of the event a delivery carries, the same on every attempt: receivers dedupe on it. */
export const EVENT_ID_HEADER = 'x-inkstone-event-id';

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
 * exponential backoff (2 s, 4 s, … at most an hour apart) for three days after the event was
 * queued; a refused destination is not retried. Each attempt goes to the tenant's alert URL as it
 * is then (an admin who corrects a wrong URL gets what was still pending there; one who removes it
 * stops them). A process that dies after sending but before recording sends again once the lease
 * runs out, with the same X-Inkstone-Event-Id.
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
    private readonly alerts: AlertsRepository,
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

  private start(w: ClaimedWebhook): Promise<boolean> {
    const p = this.deliver(w).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
    return p;
  }

  private claim(limit: number): Promise<ClaimedWebhook[]> {
    return this.alerts.claimDue(limit, this.leaseS);
  }

  private async deliver(w: ClaimedWebhook): Promise<boolean> {
    let error: string | null = null;
    let failure: unknown = null;
    let refused = false;
    try {
      if (!w.url) throw new DestinationRefusedError('no alert webhook URL is set (removed after the event was queued)');
      const secret = await this.secrets.open('alert', w.tenant_id, w.sealed, w.legacy);
      // Never unsigned (a URL set before a secret was required): retried as a failure, so the events
      // go out signed once the admin sets a secret (within the three days).
      if (!secret) throw new Error('no alertWebhookSecret is set: events are sent signed only');
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'user-agent': 'Inkstone-Webhooks/1',
        [EVENT_ID_HEADER]: w.event_id,
        [SIGNATURE_HEADER]: signPayload(secret, w.body),
      };
      await postWebhook({ url: w.url, headers, body: w.body }, this.policy, this.resolver);
    } catch (err) {
      refused = err instanceof DestinationRefusedError;
      failure = err;
      error = (err as Error).message || String(err);
    }
    try {
      if (!error) {
        await this.alerts.delivered(w);
        return true;
      }
      const retryInS = Math.min(MAX_DELAY_S, BASE_DELAY_S * 2 ** Math.min(w.attempts - 1, 20));
      const giveUp = refused || w.age_s + retryInS > WEBHOOK_GIVE_UP_S;
      await this.alerts.failed(w, error, giveUp, retryInS);
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
