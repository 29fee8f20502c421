import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { tenantQuery } from '../db/tenant-scope';
import type { LedgerGroup, OrdersInMonth } from './month-report';

/** The month report's queries (read only): the ledger by group (from its daily roll-up), the orders and the offline gradings of a period. */
@Injectable()
export class ReportsRepository {
  constructor(private readonly ds: DataSource) {}

  async ledgerGroups(tenantId: string, period: string): Promise<LedgerGroup[]> {
    const rows = await tenantQuery<Record<string, string>>(
      this.ds.manager,
      tenantId,
      `SELECT purpose, nullif(tier, '') AS tier, nullif(provider, '') AS provider, nullif(model, '') AS model, batch,
              coalesce(sum(calls) FILTER (WHERE outcome = 'ok'), 0) AS gradings,
              coalesce(sum(calls) FILTER (WHERE cache_status = 'hit'), 0) AS hits,
              sum(calls) AS calls,
              coalesce(sum(cost_nanos), 0) AS cost,
              coalesce(sum(saved_nanos), 0) AS saved,
              coalesce(sum(compression_saved_tokens), 0) AS compression_tokens,
              coalesce(sum(schedule_saved_nanos), 0) AS schedule_saved,
              coalesce(sum(input_tokens - cached_input_tokens) FILTER (WHERE outcome = 'ok' AND cache_status <> 'hit'), 0) AS uncached_in,
              coalesce(sum(cached_input_tokens) FILTER (WHERE outcome = 'ok' AND cache_status <> 'hit'), 0) AS cached_in,
              coalesce(sum(output_tokens) FILTER (WHERE outcome = 'ok' AND cache_status <> 'hit'), 0) AS out,
              coalesce(sum(cost_nanos) FILTER (WHERE outcome = 'ok' AND cache_status <> 'hit'), 0) AS paid_cost
         FROM ledger_daily WHERE tenant_id = $1 AND period = $2
        GROUP BY 1, 2, 3, 4, 5`,
      [period],
    );
    return rows.map((r) => ({
      purpose: r.purpose,
      batch: (r.batch as unknown) === true,
      tier: r.tier,
      provider: r.provider,
      model: r.model,
      gradings: Number(r.gradings),
      hits: Number(r.hits),
      calls: Number(r.calls),
      cost: BigInt(r.cost),
      saved: BigInt(r.saved),
      compressionTokens: Number(r.compression_tokens),
      scheduleSaved: BigInt(r.schedule_saved),
      uncachedIn: BigInt(r.uncached_in),
      cachedIn: BigInt(r.cached_in),
      out: BigInt(r.out),
      paidCost: BigInt(r.paid_cost),
    }));
  }

  /**
   * Orders created, sold (paid), delivered and refunded in [start, end), and the money: each sale is
   * booked in the month it was paid, each refund (of a paid order) in the month it was refunded, so
   * a month's figures never change once it is over (a refund in December does not rewrite October).
   * A partial refund is booked in the month it came (one that came before the payment, when the
   * payment came), and the refund of the rest gives back only what was left. (Payments an order
   * could not take, and their return, are not sales or refunds.)
   */
  async orders(tenantId: string, start: Date, end: Date): Promise<OrdersInMonth> {
    const [r] = await tenantQuery<Record<string, string>>(
      this.ds.manager,
      tenantId,
      `SELECT count(*) FILTER (WHERE created_at >= $2 AND created_at < $3) AS ordered,
              count(*) FILTER (WHERE paid_at >= $2 AND paid_at < $3) AS sold,
              count(*) FILTER (WHERE delivered_at >= $2 AND delivered_at < $3) AS delivered,
              count(*) FILTER (WHERE refunded_at >= $2 AND refunded_at < $3 AND paid_at IS NOT NULL) AS refunded,
              coalesce(sum(price_nanos) FILTER (WHERE paid_at >= $2 AND paid_at < $3), 0) AS sales,
              coalesce(sum(price_nanos - partially_refunded_nanos) FILTER (WHERE refunded_at >= $2 AND refunded_at < $3 AND paid_at IS NOT NULL), 0)
                + (SELECT coalesce(sum(pe.amount_nanos), 0) FROM payment_events pe JOIN orders po ON po.tenant_id = pe.tenant_id AND po.id = pe.order_id
                    WHERE pe.tenant_id = $1 AND pe.type = 'payment.refunded' AND pe.outcome = 'partial'
                      AND greatest(pe.received_at, po.paid_at) >= $2 AND greatest(pe.received_at, po.paid_at) < $3) AS refunds
         FROM orders WHERE tenant_id = $1`,
      [start, end],
    );
    return { ordered: Number(r.ordered), sold: Number(r.sold), delivered: Number(r.delivered), refunded: Number(r.refunded), sales: BigInt(r.sales), refunds: BigInt(r.refunds) };
  }

  /** Essays graded by the offline grader in [start, end) (through essays_offline_graded_idx). */
  async offlineGradings(tenantId: string, start: Date, end: Date): Promise<number> {
    const [r] = await tenantQuery<{ n: number }>(
      this.ds.manager,
      tenantId,
      OFFLINE_GRADINGS_SQL,
      [start, end],
    );
    return r.n;
  }
}

/** A school's essays graded by the offline grader in [$2, $3). */
export const OFFLINE_GRADINGS_SQL = `SELECT count(*)::int AS n FROM essays
  WHERE tenant_id = $1 AND graded_at >= $2 AND graded_at < $3 AND 'offline_estimate' = ANY(flags)`;
