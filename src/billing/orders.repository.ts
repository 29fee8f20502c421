import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { formatCny, Nanos } from '../common/money';
import { cursorAtSql, keysetPage, type KeysetPosition } from '../common/pagination';
import { tenantQuery } from '../db/tenant-scope';
import { InterruptedJob, JobQueue } from '../jobs/job-queue';
import { alertEvent, AlertsRepository } from './alerts.repository';

export type OrderStatus = 'awaiting_payment' | 'paid' | 'delivered' | 'refunded' | 'cancelled';
export type PaymentMode = 'webhook' | 'invoice';

export interface OrderView {
  orderId: string;
  essayId: string;
  status: OrderStatus;
  price: string;
  paymentMode: PaymentMode;
  /** why the order was refunded, or cancelled */
  refundReason: string | null;
  /**
   * payments that came for this order when it could no longer take them (cancelled, already paid,
   * refunded): money to check with the payment provider and return to the payer. "0.00" normally.
   */
  unappliedPayments: string;
  /**
   * what the payment provider has given back of the price so far while the order stays paid or
   * delivered (partial refunds): "0.00" normally. A refund of the rest refunds the order.
   */
  partialRefunds: string;
  /** when the review is needed by (it runs where it costs least and still in time); null: within the Batch API's turnaround */
  dueBy: string | null;
  createdAt: string;
  paidAt: string | null;
  deliveredAt: string | null;
  refundedAt: string | null;
  /** closed before it was paid (its essay erased): nothing was paid, nothing refunded */
  cancelledAt: string | null;
}

/**
 * What a payment event did: a new event (not a repeat), whether it changed the order, and how it
 * was recorded: `applied`; `partial` (a refund of part of the price); `returned` (a refund giving
 * back a payment the order could not take); `unapplied` (nothing the order could take).
 */
export interface EventOutcome {
  newEvent: boolean;
  changed: boolean;
  outcome?: 'applied' | 'partial' | 'returned' | 'unapplied';
}

/** What a refund tells the school about the order. */
interface RefundedRow {
  id: string;
  essay_id: string;
  price_nanos: string;
  payment_mode: string;
  paid_at: Date | null;
  refund_reason: string | null;
  partially_refunded_nanos: string;
}
const REFUNDED_COLUMNS = 'id, essay_id, price_nanos, payment_mode, paid_at, refund_reason, partially_refunded_nanos';

/**
 * An order's columns, and what came for it that it could not take and has not gone back yet
 * (payments recorded `unapplied`, less refunds recorded `returned`).
 */
const UNAPPLIED_NANOS = `(SELECT coalesce(sum(CASE WHEN pe.type = 'payment.succeeded' THEN pe.amount_nanos ELSE -pe.amount_nanos END), 0) FROM payment_events pe
   WHERE pe.tenant_id = o.tenant_id AND pe.order_id = o.id
     AND ((pe.type = 'payment.succeeded' AND pe.outcome = 'unapplied') OR (pe.type = 'payment.refunded' AND pe.outcome = 'returned')))`;
const ORDER_COLUMNS = `o.*, ${UNAPPLIED_NANOS}::text AS unapplied_nanos`;

/** How many refunds that came before an order's payment are applied when it comes (refundsBeforePaid). */
const EARLY_REFUNDS_MAX = 1_000;

/**
 * What a provider's refund of `amount` does to an order in this state, by the rules in their order:
 * up to the order's unapplied payments, that money goes back; the rest of the price refunds the
 * order (on one refunded already, nothing more); less than the rest, on a paid or delivered order,
 * is a partial refund; anything else is kept unapplied.
 */
function refundEffect(amount: Nanos, o: { status: OrderStatus; unapplied: Nanos; left: Nanos; refundedByProvider?: boolean }): 'returned' | 'refunded already' | 'refund' | 'partial' | 'unapplied' {
  if (amount <= 0n) return 'unapplied';
  if (amount <= o.unapplied) return 'returned';
  if (amount === o.left) {
    // Refunded already: the provider's refund of what was left is that refund's payment, once; a
    // second one (another event id) is money paid back twice, kept unapplied.
    if (o.status === 'refunded') return o.refundedByProvider ? 'unapplied' : 'refunded already';
    if (o.status === 'awaiting_payment' || o.status === 'paid' || o.status === 'delivered') return 'refund';
  }
  if (amount < o.left && (o.status === 'paid' || o.status === 'delivered')) return 'partial';
  return 'unapplied';
}

/**
 * The orders aggregate (deep-review orders and the payment events applied to them): the only code
 * that writes them. An order is paid and its deep review queued in one transaction, guarded by the
 * event id (unique) and the order's state (its row lock), so the same event — even twice at the
 * same moment — pays and queues once.
 */
@Injectable()
export class OrdersRepository {
  constructor(
    private readonly ds: DataSource,
    private readonly jobs: JobQueue,
    private readonly alerts: AlertsRepository,
  ) {}

  /**
   * A new order; in invoice mode it is paid at once and its deep review queued with it. False, and
   * nothing written, when the essay is gone or erased: its row is read under a key-share lock, so an
   * erasure under way is waited for, and one that follows sees this order and refunds it.
   */
  async create(o: { tenantId: string; id: string; essayId: string; price: Nanos; mode: PaymentMode; createdBy: string; dueBy?: Date | null }): Promise<boolean> {
    const paid = o.mode === 'invoice';
    return this.ds.transaction(async (tx) => {
      // FOR KEY SHARE: it waits for an erasure (FOR UPDATE), not for a worker's update of the essay.
      const [essay] = await tenantQuery(tx, o.tenantId, `SELECT 1 FROM essays WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL FOR KEY SHARE`, [o.essayId]);
      if (!essay) return false;
      await tenantQuery(
        tx,
        o.tenantId,
        `INSERT INTO orders (tenant_id, id, essay_id, price_nanos, payment_mode, status, created_by, paid_at, due_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $6 = 'paid' THEN now() END, $8)`,
        [o.id, o.essayId, o.price.toString(), o.mode, paid ? 'paid' : 'awaiting_payment', o.createdBy, o.dueBy?.toISOString() ?? null],
      );
      if (paid) await this.jobs.enqueue(tx, o.tenantId, [{ essayId: o.essayId, kind: 'deep_review', orderId: o.id, dueBy: o.dueBy ?? null }]);
      return true;
    });
  }

  /**
   * An open order's deadline brought forward to `dueBy` (never put back): an order awaiting payment,
   * or a paid one whose review still waits in the queue (JobQueue.bringOrderForward), with its job.
   * False, and nothing written, otherwise: the order then says the deadline its review keeps.
   */
  async bringForward(tenantId: string, orderId: string, dueBy: Date): Promise<boolean> {
    return this.ds.transaction(async (tx) => {
      // The queued job, then the order: the order of a refund's and an erasure's locks (the other
      // way round, a refund at the same moment deadlocked). A payment committing meanwhile waits
      // for the order and queues its job with the deadline either way.
      await this.jobs.lockQueuedForOrder(tx, tenantId, orderId);
      const [order] = await tenantQuery<{ status: string }>(
        tx,
        tenantId,
        `SELECT status FROM orders WHERE tenant_id = $1 AND id = $2 AND status IN ('awaiting_payment', 'paid') AND (due_by IS NULL OR due_by > $3::timestamptz) FOR UPDATE`,
        [orderId, dueBy.toISOString()],
      );
      if (!order) return false;
      if (order.status === 'paid' && !(await this.jobs.bringOrderForward(tx, tenantId, orderId, dueBy))) return false;
      await tenantQuery(tx, tenantId, `UPDATE orders SET due_by = $3 WHERE tenant_id = $1 AND id = $2`, [orderId, dueBy.toISOString()]);
      return true;
    });
  }

  /** `payment.succeeded`: records the event and, if the order awaits exactly this amount, pays it and queues its deep review. */
  async payAndQueue(tenantId: string, eventId: string, orderId: string, amount: Nanos): Promise<EventOutcome> {
    return this.ds.transaction(async (tx) => {
      // The essay first, as an erasure takes it before the order (an erasure under way is waited
      // for, and refunds the order): an erased essay's order is not paid. Then the order (lockOrder).
      const [essay] = await tenantQuery(
        tx,
        tenantId,
        `SELECT 1 FROM orders o JOIN essays e ON e.tenant_id = o.tenant_id AND e.id = o.essay_id
          WHERE o.tenant_id = $1 AND o.id = $2 AND e.erased_at IS NULL FOR KEY SHARE OF e`,
        [orderId],
      );
      await this.lockOrder(tx, tenantId, orderId);
      if (!(await this.recordEvent(tx, tenantId, eventId, 'payment.succeeded', orderId, amount))) return { newEvent: false, changed: false };
      if (!essay) return this.notTaken(tx, tenantId, orderId, eventId, amount);
      const [paid] = await tenantQuery<{ essay_id: string; due_by: Date | null }>(
        tx,
        tenantId,
        `UPDATE orders SET status = 'paid', paid_at = now()
          WHERE tenant_id = $1 AND id = $2 AND status = 'awaiting_payment' AND price_nanos = $3 RETURNING essay_id, due_by`,
        [orderId, amount.toString()],
      );
      // (A deadline that passed while the order awaited payment is kept: the plan is then real time at once.)
      const dueBy = paid?.due_by ? new Date(paid.due_by) : null;
      if (!paid) return this.notTaken(tx, tenantId, orderId, eventId, amount);
      if (!(await this.refundsBeforePaid(tx, tenantId, orderId, amount))) {
        await this.jobs.enqueue(tx, tenantId, [{ essayId: paid.essay_id, kind: 'deep_review', orderId, dueBy }]);
      }
      return { newEvent: true, changed: true, outcome: 'applied' };
    });
  }

  /**
   * A payment the order does not take (its essay erased, or the order not awaiting this amount): the
   * first payment of an order the provider refunded in full before it came is that refund's
   * (refundedBeforePaid: applied, nothing to return), whether or not its essay was erased since;
   * any other is kept `unapplied`, money to return, less the refunds that came before it and were
   * kept unapplied then: those were that money going back (`returned`, in the order they came, each
   * while it fits, refundEffect's first rule).
   */
  private async notTaken(tx: EntityManager, tenantId: string, orderId: string, eventId: string, amount: Nanos): Promise<EventOutcome> {
    if (await this.refundedBeforePaid(tx, tenantId, orderId, eventId, amount)) return { newEvent: true, changed: false, outcome: 'applied' };
    const out = await this.unapplied(tx, tenantId, eventId);
    const early = await this.unappliedRefunds(tx, tenantId, orderId);
    if (early.length === 0) return out;
    const [o] = await tenantQuery<{ unapplied_nanos: string }>(tx, tenantId, `SELECT ${UNAPPLIED_NANOS}::text AS unapplied_nanos FROM orders o WHERE tenant_id = $1 AND id = $2`, [orderId]);
    let unapplied = BigInt(o?.unapplied_nanos ?? '0');
    for (const r of early) {
      const refunded = BigInt(r.amount_nanos);
      if (refunded > unapplied) continue;
      await this.setOutcome(tx, tenantId, r.event_id, 'returned');
      unapplied -= refunded;
    }
    return out;
  }

  /**
   * The order was just paid: refunds that came before the payment (the provider's events out of
   * order; each was kept `unapplied`, the order not being paid then) apply now, in the order they
   * came, by refundByEvent's rules (refundEffect): up to the order's unapplied payments, that money
   * going back (`returned`); then each a partial refund while their sum stays under the price, and the one
   * that brings it to the price refunds the order (then no deep review is queued: true). One that
   * would go past the price stays `unapplied`. (The month report books them when the payment came,
   * ReportsRepository.orders: a month already over does not change.)
   */
  private async refundsBeforePaid(tx: EntityManager, tenantId: string, orderId: string, price: Nanos): Promise<boolean> {
    // (At most EARLY_REFUNDS_MAX, the first that came: a flood of tiny refunds does not make the
    // payment's transaction unbounded; any beyond stay `unapplied`, as before the payment.)
    const early = await this.unappliedRefunds(tx, tenantId, orderId);
    if (early.length === 0) return false;
    const [o] = await tenantQuery<{ unapplied_nanos: string }>(tx, tenantId, `SELECT ${UNAPPLIED_NANOS}::text AS unapplied_nanos FROM orders o WHERE tenant_id = $1 AND id = $2`, [
      orderId,
    ]);
    // The order as each refund, replayed in turn, finds it.
    const order = { status: 'paid' as OrderStatus, unapplied: BigInt(o.unapplied_nanos), left: price };
    for (const r of early) {
      const amount = BigInt(r.amount_nanos);
      const effect = refundEffect(amount, order);
      if (effect === 'returned') {
        await this.setOutcome(tx, tenantId, r.event_id, 'returned');
        order.unapplied -= amount;
      } else if (effect === 'partial') {
        await this.setOutcome(tx, tenantId, r.event_id, 'partial');
        order.left -= amount;
      } else if (effect === 'refund') {
        await this.setOutcome(tx, tenantId, r.event_id, 'applied');
        await this.addPartialRefund(tx, tenantId, orderId, price - order.left);
        await this.refund(tx, tenantId, orderId, 'refunded by the payment provider', ['paid'], false);
        return true;
      }
    }
    await this.addPartialRefund(tx, tenantId, orderId, price - order.left);
    return false;
  }

  /** The order's refunds kept `unapplied`, in the order they came (at most EARLY_REFUNDS_MAX, the first). */
  private unappliedRefunds(tx: EntityManager, tenantId: string, orderId: string): Promise<Array<{ event_id: string; amount_nanos: string }>> {
    return tenantQuery<{ event_id: string; amount_nanos: string }>(
      tx,
      tenantId,
      `SELECT event_id, amount_nanos::text FROM payment_events
        WHERE tenant_id = $1 AND order_id = $2 AND type = 'payment.refunded' AND outcome = 'unapplied' AND amount_nanos > 0
        ORDER BY received_at, event_id LIMIT ${EARLY_REFUNDS_MAX}`,
      [orderId],
    );
  }

  private async addPartialRefund(tx: EntityManager, tenantId: string, orderId: string, amount: Nanos): Promise<void> {
    if (amount === 0n) return;
    await tenantQuery(tx, tenantId, `UPDATE orders SET partially_refunded_nanos = partially_refunded_nanos + $3 WHERE tenant_id = $1 AND id = $2`, [orderId, amount.toString()]);
  }

  /**
   * Is this payment the one the provider refunded before it came (its `payment.refunded` for the
   * whole price closed the order, never paid, as refunded)? Then the money came and went back: the
   * payment stays applied (to that refund) and the order shows nothing to return. Only the first
   * such payment: another one is money to return. (The order's row is locked already, lockOrder:
   * of two late payments at once, the second reads the first's event.)
   */
  private async refundedBeforePaid(tx: EntityManager, tenantId: string, orderId: string, eventId: string, amount: Nanos): Promise<boolean> {
    const [early] = await tenantQuery(
      tx,
      tenantId,
      `SELECT 1 FROM orders o
        WHERE o.tenant_id = $1 AND o.id = $2 AND o.status = 'refunded' AND o.paid_at IS NULL AND o.price_nanos = $3
          AND EXISTS (SELECT 1 FROM payment_events r WHERE r.tenant_id = $1 AND r.order_id = $2 AND r.type = 'payment.refunded' AND r.outcome = 'applied' AND r.amount_nanos = $3)
          AND NOT EXISTS (SELECT 1 FROM payment_events p WHERE p.tenant_id = $1 AND p.order_id = $2 AND p.type = 'payment.succeeded' AND p.outcome = 'applied' AND p.event_id <> $4)`,
      [orderId, amount.toString(), eventId],
    );
    return early !== undefined;
  }

  /**
   * A payment event the order could not take (a payment: cancelled, already paid, refunded, or its
   * amount is not the price; a refund: see refundByEvent): kept with the outcome `unapplied`, so a
   * payment shows on the order as money to return.
   */
  private async unapplied(tx: EntityManager, tenantId: string, eventId: string): Promise<EventOutcome> {
    await this.setOutcome(tx, tenantId, eventId, 'unapplied');
    return { newEvent: true, changed: false, outcome: 'unapplied' };
  }

  private async setOutcome(tx: EntityManager, tenantId: string, eventId: string, outcome: NonNullable<EventOutcome['outcome']>): Promise<void> {
    await tenantQuery(tx, tenantId, `UPDATE payment_events SET outcome = $3 WHERE tenant_id = $1 AND event_id = $2`, [eventId, outcome]);
  }

  /**
   * `payment.refunded`: records the event and applies it, in this order:
   * - no more than the order's unapplied payments (money it could not take): that money went back
   *   (`returned`), the order is unchanged;
   * - the rest of the price (all of it, without earlier partial refunds): the order is refunded and
   *   a deep review still waiting in the queue cancelled; on an order refunded already (Inkstone
   *   refunded it and the school paid it back), recorded as applied, nothing changed — once: another
   *   such refund of it is kept `unapplied`;
   * - less than the rest, on a paid or delivered order: a partial refund the order keeps (`partial`);
   * - anything else (more than is left, nothing, an order not paid): kept `unapplied` (part of the
   *   price refunded before the order was paid applies when the payment comes: refundsBeforePaid).
   */
  async refundByEvent(tenantId: string, eventId: string, orderId: string, amount: Nanos): Promise<EventOutcome> {
    return this.ds.transaction(async (tx) => {
      // The order's jobs before the order, in the order an erasure takes them.
      await this.jobs.lockQueuedForOrder(tx, tenantId, orderId);
      await this.lockOrder(tx, tenantId, orderId);
      if (!(await this.recordEvent(tx, tenantId, eventId, 'payment.refunded', orderId, amount))) return { newEvent: false, changed: false };
      // (by_provider: another refund of this order applied in full — it refunded the order, or paid a refund Inkstone made)
      const [o] = await tenantQuery<{ status: OrderStatus; price_nanos: string; partially_refunded_nanos: string; unapplied_nanos: string; by_provider: boolean }>(
        tx,
        tenantId,
        `SELECT status, price_nanos, partially_refunded_nanos, ${UNAPPLIED_NANOS}::text AS unapplied_nanos,
                EXISTS (SELECT 1 FROM payment_events pe WHERE pe.tenant_id = o.tenant_id AND pe.order_id = o.id AND pe.type = 'payment.refunded'
                          AND pe.outcome = 'applied' AND pe.event_id <> $3) AS by_provider
           FROM orders o WHERE tenant_id = $1 AND id = $2`,
        [orderId, eventId],
      );
      if (!o) return this.unapplied(tx, tenantId, eventId);
      const effect = refundEffect(amount, {
        status: o.status,
        unapplied: BigInt(o.unapplied_nanos),
        left: BigInt(o.price_nanos) - BigInt(o.partially_refunded_nanos),
        refundedByProvider: o.by_provider,
      });
      switch (effect) {
        case 'returned':
          await this.setOutcome(tx, tenantId, eventId, 'returned');
          return { newEvent: true, changed: false, outcome: 'returned' };
        case 'refunded already':
          return { newEvent: true, changed: false, outcome: 'applied' };
        case 'refund':
          // (The provider refunded it: nothing to tell the school it does not know.)
          await this.refund(tx, tenantId, orderId, 'refunded by the payment provider', [o.status], false);
          await this.jobs.cancelQueuedForOrder(tx, tenantId, orderId, 'order refunded');
          return { newEvent: true, changed: true, outcome: 'applied' };
        case 'partial':
          await this.addPartialRefund(tx, tenantId, orderId, amount);
          await this.setOutcome(tx, tenantId, eventId, 'partial');
          return { newEvent: true, changed: true, outcome: 'partial' };
        case 'unapplied':
          return this.unapplied(tx, tenantId, eventId);
      }
    });
  }

  /**
   * A payment event's transaction locks its order before it writes the event, and reads the order
   * after: the events of one order are applied one at a time, each reading the order and its events
   * as the one before left them (a statement's snapshot is taken when it starts, so a state read by
   * the statement that waited for the lock could miss what the other had just written). FOR NO KEY
   * UPDATE, not FOR UPDATE: the event's insert takes a KEY SHARE lock on the order (its foreign key),
   * which conflicts with a lock taken FOR UPDATE; two refunds at once each held that lock and waited
   * for the other's (a deadlock, answered 500).
   */
  private async lockOrder(tx: EntityManager, tenantId: string, orderId: string): Promise<void> {
    await tenantQuery(tx, tenantId, `SELECT 1 FROM orders WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE`, [orderId]);
  }

  private async recordEvent(tx: EntityManager, tenantId: string, eventId: string, type: string, orderId: string, amount: Nanos): Promise<boolean> {
    const rows = await tenantQuery(
      tx,
      tenantId,
      `INSERT INTO payment_events (tenant_id, event_id, type, order_id, amount_nanos, outcome)
       VALUES ($1, $2, $3, $4, $5, 'applied') ON CONFLICT DO NOTHING RETURNING event_id`,
      [eventId, type, orderId, amount.toString()],
    );
    return rows.length === 1;
  }

  /** The payment event recorded under this id before (what it said), or null. */
  async seenEvent(tenantId: string, eventId: string): Promise<{ type: string; orderId: string; amount: Nanos } | null> {
    const [row] = await tenantQuery<{ type: string; order_id: string; amount_nanos: string }>(
      this.ds.manager,
      tenantId,
      `SELECT type, order_id, amount_nanos::text AS amount_nanos FROM payment_events WHERE tenant_id = $1 AND event_id = $2`,
      [eventId],
    );
    return row ? { type: row.type, orderId: row.order_id, amount: BigInt(row.amount_nanos) } : null;
  }

  /** The deep review was stored: paid → delivered. False for an order no longer paid (refunded meanwhile). */
  async markDelivered(tx: EntityManager, tenantId: string, orderId: string): Promise<boolean> {
    const rows = await tenantQuery(tx, tenantId, `UPDATE orders SET status = 'delivered', delivered_at = now() WHERE tenant_id = $1 AND id = $2 AND status = 'paid' RETURNING id`, [orderId]);
    return rows.length === 1;
  }

  /**
   * The order is refunded (by default only a paid one: what could not be delivered), with the
   * reason; when Inkstone refunds money it took (`notify`), the school's alert webhook gets an
   * `order.refunded` event in the same transaction, to pay it back through its payment provider.
   */
  async refund(tx: EntityManager, tenantId: string, orderId: string, reason: string, from: OrderStatus[] = ['paid'], notify = true): Promise<boolean> {
    const rows = await tenantQuery<RefundedRow>(
      tx,
      tenantId,
      `UPDATE orders SET status = 'refunded', refunded_at = now(), refund_reason = coalesce(refund_reason, $3)
        WHERE tenant_id = $1 AND id = $2 AND status = ANY($4::text[]) RETURNING ${REFUNDED_COLUMNS}`,
      [orderId, reason.slice(0, 300), from],
    );
    if (notify) await this.notifyRefunded(tx, tenantId, rows);
    return rows.length === 1;
  }

  /** `order.refunded` to the school's alert webhook (if set) for each order refunded that had been paid. */
  private async notifyRefunded(tx: EntityManager, tenantId: string, rows: RefundedRow[]): Promise<void> {
    for (const r of rows) {
      if (!r.paid_at) continue;
      const eventId = `order_refunded_${r.id}`;
      // What is left to give back: the price less what the provider refunded of it already.
      const amount = formatCny(BigInt(r.price_nanos) - BigInt(r.partially_refunded_nanos));
      const data = { tenantId, orderId: r.id, essayId: r.essay_id, amount, paymentMode: r.payment_mode, reason: r.refund_reason };
      await this.alerts.queue(tenantId, eventId, alertEvent(eventId, 'order.refunded', data), tx);
    }
  }

  /**
   * The essay's orders not yet delivered, with the reason: a paid one is refunded, one awaiting
   * payment is cancelled (nothing was paid). Returns how many of each.
   */
  async closeOpenForEssay(tx: EntityManager, tenantId: string, essayId: string, reason: string): Promise<{ refunded: number; cancelled: number }> {
    const rows = await tenantQuery<RefundedRow & { status: string }>(
      tx,
      tenantId,
      `UPDATE orders SET status = CASE WHEN status = 'paid' THEN 'refunded' ELSE 'cancelled' END,
              refunded_at = CASE WHEN status = 'paid' THEN now() END,
              cancelled_at = CASE WHEN status = 'paid' THEN NULL ELSE now() END,
              refund_reason = coalesce(refund_reason, $3)
        WHERE tenant_id = $1 AND essay_id = $2 AND status IN ('awaiting_payment', 'paid') RETURNING status, ${REFUNDED_COLUMNS}`,
      [essayId, reason.slice(0, 300)],
    );
    await this.notifyRefunded(tx, tenantId, rows.filter((r) => r.status === 'refunded'));
    return { refunded: rows.filter((r) => r.status === 'refunded').length, cancelled: rows.filter((r) => r.status === 'cancelled').length };
  }

  /** An order awaiting a payment that cannot come (its price no provider can be paid): cancelled, nothing was paid. */
  async cancelUnpaid(tenantId: string, orderId: string, reason: string): Promise<boolean> {
    const rows = await tenantQuery(
      this.ds.manager,
      tenantId,
      `UPDATE orders SET status = 'cancelled', cancelled_at = now(), refund_reason = $3
        WHERE tenant_id = $1 AND id = $2 AND status = 'awaiting_payment' RETURNING id`,
      [orderId, reason.slice(0, 300)],
    );
    return rows.length > 0;
  }

  /** Orders whose deep reviews' workers stopped on their last attempt are refunded (the queue's recovery). */
  async refundInterrupted(tx: EntityManager, jobs: InterruptedJob[]): Promise<void> {
    for (const j of jobs) if (j.kind === 'deep_review' && j.orderId) await this.refund(tx, j.tenantId, j.orderId, 'the deep review was interrupted too many times');
  }

  async find(tenantId: string, id: string): Promise<OrderView | null> {
    const [row] = await tenantQuery<Record<string, unknown>>(this.ds.manager, tenantId, `SELECT ${ORDER_COLUMNS} FROM orders o WHERE o.tenant_id = $1 AND o.id = $2`, [id]);
    return row ? toView(row) : null;
  }

  async forEssay(tenantId: string, essayId: string, m: EntityManager = this.ds.manager): Promise<OrderView[]> {
    const rows = await tenantQuery<Record<string, unknown>>(m, tenantId, `SELECT ${ORDER_COLUMNS} FROM orders o WHERE o.tenant_id = $1 AND o.essay_id = $2 ORDER BY o.created_at DESC`, [
      essayId,
    ]);
    return rows.map(toView);
  }

  /** The tenant's orders, newest first, a page of `limit` after `after` (keyset). */
  async list(tenantId: string, q: { status?: string; limit: number; after: KeysetPosition | null }): Promise<{ data: OrderView[]; nextCursor: string | null }> {
    const rows = await tenantQuery<Record<string, unknown>>(
      this.ds.manager,
      tenantId,
      `SELECT ${ORDER_COLUMNS}, ${cursorAtSql('o.created_at')} AS cursor_at FROM orders o
        WHERE o.tenant_id = $1 AND ($2::text IS NULL OR o.status = $2)
          AND ($3::timestamptz IS NULL OR (o.created_at, o.id) < ($3::timestamptz, $4::uuid))
        ORDER BY o.created_at DESC, o.id DESC LIMIT $5`,
      [q.status ?? null, q.after?.at ?? null, q.after?.id ?? null, q.limit + 1],
    );
    const page = keysetPage(rows, q.limit);
    return { data: page.rows.map(toView), nextCursor: page.nextCursor };
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
    dueBy: iso(r.due_by),
    createdAt: iso(r.created_at)!,
    paidAt: iso(r.paid_at),
    deliveredAt: iso(r.delivered_at),
    refundedAt: iso(r.refunded_at),
    cancelledAt: iso(r.cancelled_at),
    unappliedPayments: formatCny(BigInt((r.unapplied_nanos as string | undefined) ?? '0')),
    partialRefunds: formatCny(BigInt(r.partially_refunded_nanos as string)),
  };
}
