import { randomBytes, randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { TenantAuth } from '../common/auth';
import { ApiError } from '../common/errors';
import { stripControlChars } from '../common/control-chars';
import { formatCny, isCnyString, Nanos, parseCny } from '../common/money';
import { verifySignature } from '../common/signature';
import { AppConfig, CONFIG } from '../config/app-config';
import { ClusterBus } from '../db/cluster-bus';
import { assertTenantId, tenantQuery } from '../db/tenant-scope';
import { TenantSecretsService } from './tenant-secrets.service';

export type OrderStatus = 'awaiting_payment' | 'paid' | 'delivered' | 'refunded';
export type PaymentMode = 'webhook' | 'invoice';

export interface OrderView {
  orderId: string;
  essayId: string;
  status: OrderStatus;
  price: string;
  paymentMode: PaymentMode;
  refundReason: string | null;
  createdAt: string;
  paidAt: string | null;
  deliveredAt: string | null;
  refundedAt: string | null;
}

export interface BillingSettingsView {
  deepReviewPrice: string | null;
  paymentMode: PaymentMode | null;
  webhookSecretSet: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** What a webhook for an unknown tenant is checked against: random, held by no one. */
const NO_TENANT_SECRET = randomBytes(32).toString('hex');

/**
 * Paid deep reviews. An order is created at the tenant's price; in webhook mode it waits for the
 * payment provider's `payment.succeeded`, in invoice mode it is paid (revenue booked) at once.
 * Paying and queueing the deep review happen in one statement, guarded by the order's state and
 * by the event id, so the same event — even twice at the same moment — charges and delivers once.
 */
@Injectable()
export class OrdersService {
  private readonly logger = new Logger(OrdersService.name);

  constructor(
    private readonly ds: DataSource,
    @Inject(CONFIG) private readonly config: AppConfig,
    private readonly secrets: TenantSecretsService,
    private readonly bus: ClusterBus,
  ) {}

  async settings(tenantId: string): Promise<BillingSettingsView> {
    assertTenantId(tenantId);
    const [row] = await this.ds.query(
      `SELECT deep_review_price_nanos AS price, payment_mode AS mode, (payment_webhook_secret_enc IS NOT NULL OR payment_webhook_secret IS NOT NULL) AS secret
         FROM tenants WHERE id = $1`,
      [tenantId],
    );
    return { deepReviewPrice: row.price === null ? null : formatCny(BigInt(row.price)), paymentMode: row.mode, webhookSecretSet: row.secret };
  }

  async updateSettings(auth: TenantAuth, dto: { deepReviewPrice: string; paymentMode: PaymentMode; webhookSecret?: string }): Promise<BillingSettingsView> {
    const current = await this.settings(auth.tenantId);
    if (dto.paymentMode === 'webhook' && !dto.webhookSecret && !current.webhookSecretSet) {
      throw ApiError.validation([{ field: 'webhookSecret', message: 'webhook payment mode needs a webhookSecret' }]);
    }
    // A new secret is stored sealed (and a legacy plaintext one dropped); without one, the stored one stays.
    const sealed = dto.webhookSecret === undefined ? null : this.secrets.seal('payment', auth.tenantId, dto.webhookSecret);
    await this.ds.query(
      `UPDATE tenants SET deep_review_price_nanos = $2, payment_mode = $3,
              payment_webhook_secret_enc = coalesce($4, payment_webhook_secret_enc),
              payment_webhook_secret = CASE WHEN $4::text IS NULL THEN payment_webhook_secret END
        WHERE id = $1`,
      [auth.tenantId, parseCny(dto.deepReviewPrice).toString(), dto.paymentMode, sealed],
    );
    this.logger.log({ msg: 'billing settings updated', tenantId: auth.tenantId, paymentMode: dto.paymentMode });
    return this.settings(auth.tenantId);
  }

  /**
   * Orders a deep review of an essay. An open order for the same essay is answered again instead
   * of a second one; a delivered one is a conflict.
   */
  async create(auth: TenantAuth, essayId: string): Promise<{ order: OrderView; created: boolean }> {
    if (!UUID.test(essayId)) throw ApiError.notFound('Essay');
    const [essay] = await tenantQuery<{ status: string }>(this.ds.manager, auth.tenantId, `SELECT status FROM essays WHERE tenant_id = $1 AND id = $2`, [essayId]);
    if (!essay) throw ApiError.notFound('Essay');
    const settings = await this.settings(auth.tenantId);
    if (settings.deepReviewPrice === null || settings.paymentMode === null) {
      throw new ApiError('CONFLICT', 'Deep reviews are not on sale: an admin must set PUT /v1/billing/settings first');
    }
    const existing = await this.findForEssay(auth.tenantId, essayId);
    const open = existing.find((o) => o.status === 'awaiting_payment' || o.status === 'paid');
    if (open) return { order: open, created: false };
    const delivered = existing.find((o) => o.status === 'delivered');
    if (delivered) throw new ApiError('CONFLICT', `This essay's deep review was delivered already (order ${delivered.orderId})`, { orderId: delivered.orderId });

    const id = randomUUID();
    const price = parseCny(settings.deepReviewPrice);
    const invoice = settings.paymentMode === 'invoice';
    try {
      await tenantQuery(
        this.ds.manager,
        auth.tenantId,
        `WITH o AS (
           INSERT INTO orders (tenant_id, id, essay_id, price_nanos, payment_mode, status, created_by, paid_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $6 = 'paid' THEN now() END) RETURNING id, essay_id, status)
         INSERT INTO jobs (tenant_id, id, essay_id, kind, status, max_attempts, order_id)
         SELECT $1, $8, essay_id, 'deep_review', 'queued', $9, id FROM o WHERE status = 'paid'`,
        [id, essayId, price.toString(), settings.paymentMode, invoice ? 'paid' : 'awaiting_payment', auth.keyId, randomUUID(), this.config.grading.maxAttempts],
      );
    } catch (err) {
      // Two requests for the same essay at once: the unique open-order index lets one through.
      if ((err as { code?: string }).code === '23505') {
        const again = (await this.findForEssay(auth.tenantId, essayId)).find((o) => o.status === 'awaiting_payment' || o.status === 'paid');
        if (again) return { order: again, created: false };
      }
      throw err;
    }
    this.logger.log({ msg: 'deep review ordered', tenantId: auth.tenantId, orderId: id, essayId, paymentMode: settings.paymentMode });
    return { order: await this.get(auth.tenantId, id), created: true };
  }

  private async findForEssay(tenantId: string, essayId: string): Promise<OrderView[]> {
    const rows = await tenantQuery<Record<string, unknown>>(
      this.ds.manager,
      tenantId,
      `SELECT * FROM orders WHERE tenant_id = $1 AND essay_id = $2 ORDER BY created_at DESC`,
      [essayId],
    );
    return rows.map(toView);
  }

  async get(tenantId: string, id: string): Promise<OrderView> {
    if (!UUID.test(id)) throw ApiError.notFound('Order');
    const [row] = await tenantQuery<Record<string, unknown>>(this.ds.manager, tenantId, `SELECT * FROM orders WHERE tenant_id = $1 AND id = $2`, [id]);
    if (!row) throw ApiError.notFound('Order');
    return toView(row);
  }

  async list(auth: TenantAuth, status?: string): Promise<OrderView[]> {
    const rows = await tenantQuery<Record<string, unknown>>(
      this.ds.manager,
      auth.tenantId,
      `SELECT * FROM orders WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY created_at DESC LIMIT 500`,
      [status ?? null],
    );
    return rows.map(toView);
  }

  /**
   * A payment provider's event, signed with the tenant's webhook secret. Bad, missing or stale
   * signatures are 401; an amount that is not the order's price is 409; an event id seen before
   * answers 200 and changes nothing.
   */
  async handleWebhook(tenantId: string, rawBody: Buffer | undefined, signature: string | undefined): Promise<{ received: true; duplicate: boolean; order?: OrderView }> {
    const unauthorized = (why: string) => new ApiError('INVALID_SIGNATURE', `Webhook signature refused: ${why}`);
    // An unknown tenant, or one without a secret, is checked against a secret nobody holds: its 401
    // reads exactly like a wrong signature's, so the answer does not tell whether the tenant exists.
    const secret = UUID.test(tenantId) ? await this.secrets.read('payment', tenantId) : null;
    if (!rawBody) throw unauthorized('empty body');
    const check = verifySignature(signature, secret || NO_TENANT_SECRET, rawBody);
    if (!check.ok) throw unauthorized(check.reason === 'stale' ? 'timestamp more than 5 minutes away' : `${check.reason} signature`);
    if (!secret) throw unauthorized('mismatch signature');

    let event: { id?: unknown; type?: unknown; data?: { orderId?: unknown; amount?: unknown } };
    try {
      event = JSON.parse(rawBody.toString('utf8'));
    } catch {
      throw new ApiError('INVALID_JSON', 'Webhook body is not valid JSON');
    }
    if (!event || typeof event !== 'object' || Array.isArray(event)) throw ApiError.validation([{ field: 'body', message: 'the body must be an event object' }]);
    const problems = [];
    // Cleaned like every string the API takes (a NUL would fail the statement that records it).
    if (typeof event.id === 'string') event.id = stripControlChars(event.id);
    if (typeof event.id !== 'string' || event.id.length === 0 || event.id.length > 200) problems.push({ field: 'id', message: 'id must be the event id' });
    if (event.type !== 'payment.succeeded' && event.type !== 'payment.refunded') {
      problems.push({ field: 'type', message: 'type must be payment.succeeded or payment.refunded' });
    }
    const orderId = event.data?.orderId;
    if (typeof orderId !== 'string' || !UUID.test(orderId)) problems.push({ field: 'data.orderId', message: 'data.orderId must be an order id' });
    const amountText = typeof event.data?.amount === 'number' ? String(event.data.amount) : event.data?.amount;
    if (!isCnyString(amountText)) problems.push({ field: 'data.amount', message: 'data.amount must be the amount in CNY, e.g. "9.90"' });
    if (problems.length) throw ApiError.validation(problems);
    const eventId = event.id as string;
    const type = event.type as 'payment.succeeded' | 'payment.refunded';
    const amount = parseCny(amountText as string);

    const seen = await tenantQuery(this.ds.manager, tenantId, `SELECT 1 FROM payment_events WHERE tenant_id = $1 AND event_id = $2`, [eventId]);
    if (seen.length) return { received: true, duplicate: true };
    const order = await this.get(tenantId, orderId as string);
    if (amount !== parseCny(order.price)) {
      throw new ApiError('CONFLICT', `Amount ${formatCny(amount)} does not match the order's price ${order.price}`);
    }
    const applied = type === 'payment.succeeded' ? await this.paid(tenantId, eventId, order.orderId, amount) : await this.refunded(tenantId, eventId, order.orderId, amount);
    if (!applied.newEvent) return { received: true, duplicate: true };
    this.logger.log({ msg: 'payment event applied', tenantId, orderId: order.orderId, type, changed: applied.changed });
    return { received: true, duplicate: false, order: await this.get(tenantId, order.orderId) };
  }

  /** Records the event and, if the order awaits payment, pays it and queues its deep review: one statement. */
  private async paid(tenantId: string, eventId: string, orderId: string, amount: Nanos) {
    const [r] = await tenantQuery<{ new_event: number; paid: number }>(
      this.ds.manager,
      tenantId,
      `WITH ev AS (
         INSERT INTO payment_events (tenant_id, event_id, type, order_id, amount_nanos, outcome)
         VALUES ($1, $2, 'payment.succeeded', $3, $4, 'applied') ON CONFLICT DO NOTHING RETURNING event_id),
       paid AS (
         UPDATE orders SET status = 'paid', paid_at = now()
          WHERE tenant_id = $1 AND id = $3 AND status = 'awaiting_payment' AND price_nanos = $4 AND EXISTS (SELECT 1 FROM ev)
          RETURNING id, essay_id),
       job AS (
         INSERT INTO jobs (tenant_id, id, essay_id, kind, status, max_attempts, order_id)
         SELECT $1, $5, essay_id, 'deep_review', 'queued', $6, id FROM paid RETURNING id)
       SELECT (SELECT count(*) FROM ev)::int AS new_event, (SELECT count(*) FROM paid)::int AS paid`,
      [eventId, orderId, amount.toString(), randomUUID(), this.config.grading.maxAttempts],
    );
    if (r.paid === 1) this.bus.publish('queued', {}); // wake an idle worker on any instance
    return { newEvent: r.new_event === 1, changed: r.paid === 1 };
  }

  /** Records the event and refunds the order; a deep review still waiting in the queue is cancelled. */
  private async refunded(tenantId: string, eventId: string, orderId: string, amount: Nanos) {
    const [r] = await tenantQuery<{ new_event: number; refunded: number }>(
      this.ds.manager,
      tenantId,
      `WITH ev AS (
         INSERT INTO payment_events (tenant_id, event_id, type, order_id, amount_nanos, outcome)
         VALUES ($1, $2, 'payment.refunded', $3, $4, 'applied') ON CONFLICT DO NOTHING RETURNING event_id),
       refunded AS (
         UPDATE orders SET status = 'refunded', refunded_at = now(), refund_reason = coalesce(refund_reason, 'refunded by the payment provider')
          WHERE tenant_id = $1 AND id = $3 AND status <> 'refunded' AND EXISTS (SELECT 1 FROM ev) RETURNING id),
       cancelled AS (
         UPDATE jobs SET status = 'failed', finished_at = now(), last_error = 'order refunded'
          WHERE tenant_id = $1 AND order_id = $3 AND status = 'queued' AND EXISTS (SELECT 1 FROM refunded) RETURNING id)
       SELECT (SELECT count(*) FROM ev)::int AS new_event, (SELECT count(*) FROM refunded)::int AS refunded`,
      [eventId, orderId, amount.toString()],
    );
    return { newEvent: r.new_event === 1, changed: r.refunded === 1 };
  }
}

function iso(v: unknown): string | null {
  return v ? (v as Date).toISOString() : null;
}

function toView(r: Record<string, unknown>): OrderView {
  return {
    orderId: String(r.id),
    essayId: String(r.essay_id),
    status: r.status as OrderStatus,
    price: formatCny(BigInt(r.price_nanos as string)),
    paymentMode: r.payment_mode as PaymentMode,
    refundReason: (r.refund_reason as string | null) ?? null,
    createdAt: iso(r.created_at)!,
    paidAt: iso(r.paid_at),
    deliveredAt: iso(r.delivered_at),
    refundedAt: iso(r.refunded_at),
  };
}
