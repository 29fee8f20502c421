import { randomBytes, randomUUID } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { TenantAuth } from '../common/auth';
import { ApiError } from '../common/errors';
import { stripControlChars } from '../common/control-chars';
import { formatCny, isCnyString, NANOS_PER_CNY, parseCny } from '../common/money';
import { decodeCursor, pageLimit } from '../common/pagination';
import { verifySignature } from '../common/signature';
import { ClusterBus } from '../db/cluster-bus';
import { TenantsRepository } from '../tenancy/tenants.repository';
import { OrdersRepository, OrderView, PaymentMode } from './orders.repository';
import { BillingError } from './billing-errors';
import { TenantSecretsService } from './tenant-secrets.service';
import { UUID } from '../common/ids';

export type { OrderStatus, OrderView, PaymentMode } from './orders.repository';

/** GET /v1/billing/offer: whether the school sells deep reviews now, and at what price (CNY). */
export interface DeepReviewOffer {
  onSale: boolean;
  /** the price of one deep review (null when none is on sale) */
  price: string | null;
  /** how an order is paid (null when none is on sale) */
  paymentMode: PaymentMode | null;
}

/** A payment provider's event (POST /v1/payments/webhook/:tenantId), signed with the tenant's webhook secret. */
export interface PaymentEvent {
  /** the provider's event id: an id seen before changes nothing */
  id: string;
  /** payment.succeeded or payment.refunded; another type is acknowledged and ignored */
  type: string;
  data: {
    orderId: string;
    /** CNY as a decimal string, e.g. "9.90" (never a JSON number) */
    amount: string;
  };
}

/** What a payment webhook is answered (200): a repeated event id is `duplicate`; an event of another type than payment.succeeded or payment.refunded is `ignored`. */
export interface PaymentWebhookAnswer {
  received: true;
  duplicate: boolean;
  ignored?: true;
  order?: OrderView;
}

export interface BillingSettingsView {
  deepReviewPrice: string | null;
  paymentMode: PaymentMode | null;
  webhookSecretSet: boolean;
}

/** What a webhook for an unknown tenant is checked against: random, held by no one. */
const NO_TENANT_SECRET = randomBytes(32).toString('hex');

/**
 * Paid deep reviews. An order is created at the tenant's price; in webhook mode it waits for the
 * payment provider's `payment.succeeded`, in invoice mode it is paid (revenue booked) at once.
 * Paying and queueing the deep review happen in one transaction (OrdersRepository), guarded by the
 * order's state and by the event id, so the same event — even twice at the same moment — charges
 * and delivers once.
 */
/**
 * A price a payment provider can be paid (webhook mode): above zero, in whole fen. A price it cannot
 * (9.995, 0) would leave every order waiting, each payment refused as the wrong amount; an invoice
 * may be finer. Settings stored before this rule are not on sale until set again.
 */
function payable(price: bigint, mode: PaymentMode): boolean {
  return mode !== 'webhook' || (price > 0n && price % (NANOS_PER_CNY / 100n) === 0n);
}

function onSaleAt(s: { deepReviewPrice: string | null; paymentMode: PaymentMode | null }): boolean {
  return s.deepReviewPrice !== null && s.paymentMode !== null && payable(parseCny(s.deepReviewPrice), s.paymentMode);
}

@Injectable()
export class OrdersService {
  private readonly logger = new Logger(OrdersService.name);

  constructor(
    private readonly orders: OrdersRepository,
    private readonly tenants: TenantsRepository,
    private readonly secrets: TenantSecretsService,
    private readonly bus: ClusterBus,
  ) {}

  async settings(tenantId: string): Promise<BillingSettingsView> {
    const s = await this.tenants.billing(tenantId);
    return { deepReviewPrice: s.deepReviewPriceNanos === null ? null : formatCny(s.deepReviewPriceNanos), paymentMode: s.paymentMode, webhookSecretSet: s.webhookSecretSet };
  }

  /** What any of the tenant's keys may know before ordering a deep review: whether one is on sale, and its price. */
  async offer(tenantId: string): Promise<DeepReviewOffer> {
    const s = await this.settings(tenantId);
    const onSale = onSaleAt(s);
    return { onSale, price: onSale ? s.deepReviewPrice : null, paymentMode: onSale ? s.paymentMode : null };
  }

  async updateSettings(auth: TenantAuth, dto: { deepReviewPrice: string; paymentMode: PaymentMode; webhookSecret?: string }): Promise<BillingSettingsView> {
    const current = await this.settings(auth.tenantId);
    if (dto.paymentMode === 'webhook' && !dto.webhookSecret && !current.webhookSecretSet) {
      throw ApiError.validation([{ field: 'webhookSecret', message: 'webhook payment mode needs a webhookSecret' }]);
    }
    const price = parseCny(dto.deepReviewPrice);
    if (!payable(price, dto.paymentMode)) {
      throw ApiError.validation([{ field: 'deepReviewPrice', message: 'deepReviewPrice must be above zero and in whole fen (at most 2 decimals) in webhook payment mode' }]);
    }
    // A new secret is stored sealed (and a legacy plaintext one dropped); without one, the stored one stays.
    const sealed = dto.webhookSecret === undefined ? null : this.secrets.seal('payment', auth.tenantId, dto.webhookSecret);
    await this.tenants.setBilling(auth.tenantId, { price, mode: dto.paymentMode, sealedSecret: sealed });
    // Every instance holds the school to its own bucket of failed signatures from now on (TenantSecretsService).
    if (sealed !== null) this.bus.publish('payment-secret', { tenantId: auth.tenantId });
    this.logger.log({ msg: 'billing settings updated', tenantId: auth.tenantId, paymentMode: dto.paymentMode });
    return this.settings(auth.tenantId);
  }

  /**
   * Orders a deep review of an essay the caller (EssaysService) has found in this tenant. An open
   * order for the same essay is answered again instead of a second one; a delivered one is a
   * conflict.
   */
  /**
   * Orders an essay's deep review at the school's price. `shownPrice` (nanos), when given, is the
   * price the buyer agreed to: a new order at any other price is refused (409 PRICE_CHANGED), so
   * a price raised after a page read the offer is never charged unseen. An open order is answered
   * as it is, at the price it was made at; a deadline earlier than its own brings it forward.
   */
  async create(
    auth: TenantAuth,
    essayId: string,
    dueBy: Date | null = null,
    shownPrice?: bigint,
    /** checks only a new order must pass (can the budget cover the review): an open one is answered as it is */
    beforeNew?: () => Promise<void>,
  ): Promise<{ order: OrderView; created: boolean }> {
    const settings = await this.settings(auth.tenantId);
    if (settings.deepReviewPrice === null || settings.paymentMode === null) {
      throw new BillingError('NOT_ON_SALE', 'Deep reviews are not on sale: an admin must set PUT /v1/billing/settings first');
    }
    const existing = await this.findForEssay(auth.tenantId, essayId);
    let open = existing.find((o) => o.status === 'awaiting_payment' || o.status === 'paid');
    // An order made at a price no provider can be paid (set before that was refused) would wait for
    // ever, and hold the essay's one open order: it is cancelled (nothing was paid) for a new one —
    // once the new one passes its checks (refused, the old one stays as it was). (An unpaid order
    // of webhook mode, since switched to invoices, stays open: its payment may still come.)
    let unpayable: OrderView | undefined;
    if (open && open.status === 'awaiting_payment' && !payable(parseCny(open.price), open.paymentMode)) {
      unpayable = open;
      open = undefined;
    }
    if (open) {
      // Ordered again with an earlier deadline ("by tomorrow morning" after an order with none): the
      // open order is due by then from now on (it was answered as it was, and ran on its old plan).
      if (dueBy && (open.dueBy === null || Date.parse(open.dueBy) > dueBy.getTime()) && (await this.orders.bringForward(auth.tenantId, open.orderId, dueBy))) {
        this.logger.log({ msg: 'deep review brought forward', tenantId: auth.tenantId, orderId: open.orderId });
        open = await this.get(auth.tenantId, open.orderId);
      }
      return { order: open, created: false };
    }
    if (!onSaleAt(settings)) {
      throw new BillingError('NOT_ON_SALE', `Deep reviews are not on sale: their price (${settings.deepReviewPrice}) cannot be paid through a payment provider (above zero, in whole fen); an admin must set PUT /v1/billing/settings again`);
    }
    const delivered = existing.find((o) => o.status === 'delivered');
    if (delivered) throw new ApiError('CONFLICT', `This essay's deep review was delivered already (order ${delivered.orderId})`, { orderId: delivered.orderId });

    const id = randomUUID();
    const price = parseCny(settings.deepReviewPrice);
    if (shownPrice !== undefined && shownPrice !== price) {
      throw new BillingError('PRICE_CHANGED', `The deep-review price is ${formatCny(price)} now, not ${formatCny(shownPrice)}: nothing was ordered`, { price: formatCny(price) });
    }
    await beforeNew?.();
    if (unpayable && !(await this.orders.cancelUnpaid(auth.tenantId, unpayable.orderId, `its price (${unpayable.price}) cannot be paid through a payment provider`))) {
      // Paid (or closed) since it was read: the essay's open order is what it now is.
      const now = (await this.findForEssay(auth.tenantId, essayId)).find((o) => o.status === 'awaiting_payment' || o.status === 'paid');
      if (now) return { order: now, created: false };
    }
    try {
      if (!(await this.orders.create({ tenantId: auth.tenantId, id, essayId, price, mode: settings.paymentMode, createdBy: auth.keyId, dueBy }))) {
        throw ApiError.notFound('Essay'); // erased since the caller found it
      }
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

  private findForEssay(tenantId: string, essayId: string): Promise<OrderView[]> {
    return this.orders.forEssay(tenantId, essayId);
  }

  /** The essay's latest deep-review order (its state), or null when none was ordered. */
  /** The essay's latest order, or null; read by `m` when given (a snapshot the caller holds). */
  async latestForEssay(tenantId: string, essayId: string, m?: EntityManager): Promise<OrderView | null> {
    return (await this.orders.forEssay(tenantId, essayId, m))[0] ?? null;
  }

  async get(tenantId: string, id: string): Promise<OrderView> {
    if (!UUID.test(id)) throw ApiError.notFound('Order');
    const order = await this.orders.find(tenantId, id);
    if (!order) throw ApiError.notFound('Order');
    return order;
  }

  /** The tenant's orders, newest first, `limit` (1-500, default 500) a page. */
  list(auth: TenantAuth, q: { status?: string; limit?: string; cursor?: string }): Promise<{ data: OrderView[]; nextCursor: string | null }> {
    const limit = pageLimit(q.limit, 500);
    return this.orders.list(auth.tenantId, { status: q.status, limit, after: q.cursor !== undefined ? decodeCursor(q.cursor) : null });
  }

  /**
   * A payment provider's event, signed with the tenant's webhook secret. Bad, missing or stale
   * signatures are 401; a payment of another amount than the order's price is kept unapplied and
   * answered 409 (its redelivery is a duplicate, 200); an event
   * id seen before answers 200 and changes nothing; an event of another type is acknowledged (200)
   * and ignored.
   */
  async handleWebhook(tenantId: string, rawBody: Buffer | undefined, signature: string | undefined): Promise<PaymentWebhookAnswer> {
    // A UUID in the path may come in capitals: the id as stored is lower case (the stored secret is bound to it).
    tenantId = tenantId.toLowerCase();
    // An unknown tenant, or one without a secret, is checked against a secret nobody holds: its 401
    // reads exactly like a wrong signature's, so the answer does not tell whether the tenant exists.
    const secret = UUID.test(tenantId) ? await this.secrets.read('payment', tenantId) : null;
    const unauthorized = (why: string) => BillingError.invalidSignature(why, secret !== null);
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
    if (typeof event.type !== 'string' || event.type.length === 0 || event.type.length > 200) problems.push({ field: 'type', message: 'type must be the event type' });
    if (problems.length) throw ApiError.validation(problems);
    if (event.type !== 'payment.succeeded' && event.type !== 'payment.refunded') {
      // Another kind of event (a provider sends many: pending, disputes, payouts): acknowledged and
      // left alone, as an error would have the provider send it again for days.
      this.logger.log({ msg: 'a payment event of another type was ignored', tenantId, eventId: event.id as string, type: stripControlChars(String(event.type)).slice(0, 100) });
      return { received: true, duplicate: false, ignored: true };
    }
    const orderId = event.data?.orderId;
    if (typeof orderId !== 'string' || !UUID.test(orderId)) problems.push({ field: 'data.orderId', message: 'data.orderId must be an order id' });
    // A decimal string only: a JSON number is a float, which cannot carry an amount of money exactly.
    const amountText = event.data?.amount;
    if (!isCnyString(amountText)) problems.push({ field: 'data.amount', message: 'data.amount must be the amount in CNY as a decimal string, e.g. "9.90" (not a JSON number)' });
    if (problems.length) throw ApiError.validation(problems);
    const eventId = event.id as string;
    const type = event.type as 'payment.succeeded' | 'payment.refunded';
    const amount = parseCny(amountText as string);

    // A repeat is answered as one only when it says what the first said: an id the provider reused
    // for another event (a refund under the payment's id, another order, another amount) would
    // otherwise be lost as a "duplicate", a refund never booked.
    const repeat = async () => {
      const seen = await this.orders.seenEvent(tenantId, eventId);
      if (!seen) return false;
      if (seen.type === type && seen.orderId === (orderId as string).toLowerCase() && seen.amount === amount) return true;
      this.logger.error({ msg: 'a payment event id came again with another event: not applied, check it with the payment provider', tenantId, eventId, type, orderId });
      throw new ApiError('CONFLICT', `Event ${eventId} was received before as another event (${seen.type} of ${formatCny(seen.amount)} for order ${seen.orderId}): an event id names one event`, {
        eventId,
        recorded: { type: seen.type, orderId: seen.orderId, amount: formatCny(seen.amount) },
      });
    };
    if (await repeat()) return { received: true, duplicate: true };
    const order = await this.get(tenantId, orderId as string);
    // An amount that is not the price is recorded before anything is answered: a payment is kept
    // as unapplied (money to return), a refund applied as a partial one when it can be
    // (OrdersRepository.refundByEvent). A payment of another amount is then answered 409; the
    // provider's redelivery of the same event is a duplicate (200), so it does not retry for ever.
    const applied =
      type === 'payment.succeeded'
        ? await this.orders.payAndQueue(tenantId, eventId, order.orderId, amount)
        : await this.orders.refundByEvent(tenantId, eventId, order.orderId, amount);
    if (applied.changed && type === 'payment.succeeded') this.bus.publish('queued', {}); // wake an idle worker on any instance
    // (The same id recorded meanwhile by a delivery at the same moment: a duplicate if it said the same.)
    if (!applied.newEvent) {
      await repeat();
      return { received: true, duplicate: true };
    }
    const amounts = { amount: formatCny(amount), price: order.price, status: order.status };
    if (applied.outcome === 'unapplied' && type === 'payment.succeeded') {
      // Money came for an order that could not take it (cancelled, paid already, refunded, another
      // amount): it shows on the order as unappliedPayments, to be returned to the payer.
      this.logger.warn({ msg: 'a payment came for an order that could not take it: return it to the payer', tenantId, orderId: order.orderId, ...amounts });
    } else if (applied.outcome === 'unapplied' && order.status === 'awaiting_payment') {
      this.logger.log({ msg: 'a refund came before its payment: kept until the payment comes', tenantId, orderId: order.orderId, ...amounts });
    } else if (applied.outcome === 'unapplied') {
      this.logger.warn({ msg: 'a refund came that the order could not take: kept unapplied, check it with the payment provider', tenantId, orderId: order.orderId, ...amounts });
    }
    this.logger.log({ msg: 'payment event recorded', tenantId, orderId: order.orderId, type, outcome: applied.outcome, changed: applied.changed });
    if (type === 'payment.succeeded' && applied.outcome === 'unapplied' && amount !== parseCny(order.price)) {
      throw new ApiError('CONFLICT', `The payment of ${formatCny(amount)} is not the order's price, ${order.price}: it was recorded as money to return to the payer (unappliedPayments), not applied`, {
        orderId: order.orderId,
        amount: formatCny(amount),
        price: order.price,
        recorded: 'unapplied',
      });
    }
    return { received: true, duplicate: false, order: await this.get(tenantId, order.orderId) };
  }
}
